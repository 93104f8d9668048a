"""Executes the numbered notebooks in order with papermill (called by ./run_all.sh).

    python -m mars_lib.pipeline.runner [--profile smoke|cpu|paper] [--only 03 [--only 04]] [-p name value]...
                              [--force] [--dry-run] [--figures-only] [--claims-only]

- Executed copies go to <results_dir>/executed/ (never back into notebooks/).
- A notebook whose inputs are unchanged since its last successful run (same notebook, same
  parameters, same mars_lib source, same task data) is skipped; --force re-executes it.
- `-p name value` is passed to every notebook whose parameters cell declares `name`; values are
  Python literals (`-p seeds "[0, 1]"`, `-p tau_v1 0.2`), anything else is a string. A name no
  notebook declares is an error.
- --dry-run prints each notebook's resolved configuration and validates it, executing nothing.
- --figures-only redraws every figure (of the --only notebooks, if given) from the tables saved under
  <results_dir> (the profile's, or `-p results_dir DIR`) with `mars_lib.figures.draw_all`, and prints
  each path: no notebook runs, no model is loaded; a figure whose tables are missing is skipped with
  the reason.
- --claims-only rebuilds <results_dir>/claims.csv from the saved tables (`claims.write_claims`: notebook
  03's per-pair outcomes, the fine-tuned regime's `cpu_regimes/` and `gpu_regimes/` tables, notebook
  05's win rates) and, for the reference results, the README's glance: after `bench/gpu_regimes.py`
  has added a regime, without re-running notebook 05.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mars_lib.evaluation.claims import write_claims
from mars_lib.pipeline.config import PROFILES, REPO_ROOT, ConfigError, RunConfig
from mars_lib.figures import draw_all, FIGURES
from mars_lib.pipeline.assets import cache_dir, set_offline, set_online
from mars_lib.pipeline.io import atomic_write_text
from mars_lib.pipeline.report import main as write_report
from mars_lib.pipeline.run_log import PeakRSS, append_run, folder_mib

NOTEBOOKS = REPO_ROOT / "notebooks"


def notebook_params(path: Path) -> dict:
    """Names and literal defaults of a notebook's `parameters` cell."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body if isinstance(t, ast.Assign)}
    raise ConfigError(f"{path.name}: no cell tagged 'parameters'")


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _fingerprint(nb: Path, params: dict, cfg: RunConfig) -> str:
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for f in sorted((REPO_ROOT / "mars_lib").rglob("*.py")):      # the whole package, subpackages included
        h.update(f.read_bytes())
    man = cfg.task_path / "manifest.json"
    if man.exists():
        h.update(man.read_bytes())
    return h.hexdigest()


def _ipc_kernel_manager():
    """The kernel talks to papermill over local IPC sockets, not TCP (so it prints no "running over TCP
    without encryption" warning; the sockets are removed when the kernel stops), and is not sent SIGINT
    when it is shut down after a finished run."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        transport = "ipc"

        def _ip_default(self) -> str:
            # jupyter_client's default socket prefix is "kernel-ipc" in the working directory, and it picks
            # the first free numbers there: two runs started at once (./run_all.sh beside the tests, or two
            # papermill reruns) took the same sockets and read each other's messages ("Invalid Signature").
            # A private directory per kernel makes the sockets unique; it is removed with the kernel.
            self._socket_dir = tempfile.mkdtemp(prefix="mars-kernel-")
            return os.path.join(self._socket_dir, "kernel-ipc")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart and getattr(self, "_socket_dir", None):
                shutil.rmtree(self._socket_dir, ignore_errors=True)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts (SIGINT) a kernel before every shutdown request; after a finished
            # run that only makes ipykernel log "ERROR | KeyboardInterrupt caught in kernel"
            if not self.shutting_down:
                await super()._async_interrupt_kernel()
    return IPCKernelManager


def _show(p: Path) -> str:
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def redraw_figures(profile: str, results_dir: str | None, notebooks: set[str] | None = None) -> int:
    """Redraws every figure (of `notebooks`, by number, when given) from the tables under the profile's
    results_dir (or `results_dir`) into its figures/ folder and prints each path."""
    try:
        cfg = RunConfig.resolve(profile, results_dir=results_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results = Path(cfg.results_dir) if Path(cfg.results_dir).is_absolute() else REPO_ROOT / cfg.results_dir
    if not results.is_dir():
        print(f"error: {_show(results)} does not exist: run the notebooks first", file=sys.stderr)
        return 2
    os.environ.setdefault("MPLBACKEND", "Agg")
    t0 = time.perf_counter()
    paths = draw_all(results, None if notebooks is None else [n for n in FIGURES if n[:2] in notebooks])
    for p in paths:
        print(f"  {_show(p)}")
    print(f"[run_all] {len(paths)} figure(s) redrawn from the tables under {_show(results)} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def rebuild_claims(profile: str, fields: dict) -> int:
    """`--claims-only`: claims.csv from the saved tables, then the README's glance for the reference run."""
    cfg = RunConfig.resolve(profile, **fields)
    table = write_claims(cfg)
    print(f"[run_all] {len(table)} claims -> {_show(cfg.path('claims.csv'))}: "
          + ", ".join(f"{n} {v}" for v, n in table.verdict.value_counts().items()))
    if cfg.results_dir == "results":
        write_report(["--write"])
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="./run_all.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", help=f"one of {sorted(PROFILES)} (default cpu)")
    ap.add_argument("--only", action="append", default=[], metavar="NN", help="run only notebook NN (repeatable)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    ap.add_argument("--force", action="store_true", help="re-execute notebooks even if up to date")
    ap.add_argument("--dry-run", action="store_true", help="print resolved configs, execute nothing")
    ap.add_argument("--figures-only", action="store_true", help="redraw the figures from the saved tables of "
                    "results_dir; run no notebook, load no model")
    ap.add_argument("--claims-only", action="store_true", help="rebuild claims.csv (and the README glance) from the "
                    "saved tables; run no notebook")
    return ap


def _kernel_environment(cfg: RunConfig) -> None:
    set_offline() if cfg.offline else set_online()            # the kernel inherits this environment
    # the executed copy is read as a report: figures inline (ipykernel's own backend, not the Agg
    # that scripts use) and a progress line every 30 s rather than hundreds of bar redraws
    os.environ.pop("MPLBACKEND", None)
    os.environ.setdefault("TQDM_MININTERVAL", "30")
    # libraries import tqdm.auto, which warns once per kernel that ipywidgets is missing; the package
    # uses text bars on purpose, so that one warning is silenced in the kernel (nothing else is)
    if "IProgress" not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                              "ignore:IProgress not found"]))


def _execute(pm, nb: Path, out: Path, params: dict, cfg: RunConfig, profile: str, cache: Path,
             cache_state: str) -> tuple[float, float | None]:
    """Run one notebook with papermill; log its time and largest process to <results_dir>/run_log.csv."""
    _kernel_environment(cfg)
    t0, cache_before = time.perf_counter(), folder_mib(cache)
    with PeakRSS() as peak:
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="mars", cwd=str(NOTEBOOKS),
                            progress_bar=False, log_output=False, kernel_manager_class=_ipc_kernel_manager(),
                            start_timeout=600)          # a kernel on a busy 2-core machine can take > 60 s to start
    secs = time.perf_counter() - t0
    append_run(out.parent.parent, profile=profile, notebook=nb.stem, seconds=round(secs, 1), peak_rss_mib=peak.mib,
               cache_state=cache_state, cache_mib_before=cache_before, cache_dir=str(cache))
    return secs, peak.mib


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.profile not in PROFILES: ap.error(f"unknown profile {a.profile!r}; choose one of {sorted(PROFILES)}")
    nbs = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if a.only:
        wanted = {o.zfill(2) for o in a.only}
        unknown = wanted - {p.name[:2] for p in nbs}
        if unknown:
            ap.error(f"--only {sorted(unknown)}: no such notebook; have {[p.name for p in nbs]}")
        nbs = [p for p in nbs if p.name[:2] in wanted]
    user = {k: parse_value(v) for k, v in a.param}
    declared = {p: notebook_params(p) for p in nbs}
    fields = set(RunConfig.field_names())      # a config setting goes to every notebook, others where declared
    unknown = set(user) - set().union(*declared.values()) - fields - {"profile"}
    if unknown:
        ap.error(f"-p {sorted(unknown)}: no selected notebook has such a parameter")
    if a.claims_only:
        return rebuild_claims(a.profile, {k: v for k, v in user.items() if k in fields})
    if a.figures_only:
        return redraw_figures(a.profile, user.get("results_dir"), {p.name[:2] for p in nbs} if a.only else None)

    plan = []
    for nb in nbs:
        params = {"profile": a.profile, **{k: v for k, v in user.items() if k in declared[nb] or k in fields}}
        params["overrides"] = sorted(k for k in params if k in RunConfig.field_names() and k != "profile")
        cfg_fields = {k: params[k] for k in params["overrides"]}
        try:
            cfg = RunConfig.resolve(a.profile, **cfg_fields)
        except ConfigError as e:
            print(f"error: {nb.name}: {e}", file=sys.stderr)
            return 2
        plan.append((nb, params, cfg))
        if a.dry_run:
            print(f"== {nb.name}  parameters {params}")
            print(json.dumps(cfg.to_dict(), indent=1, default=str))
    if a.dry_run:
        print(f"dry run: {len(plan)} notebook configuration(s) valid; nothing executed, nothing downloaded")
        return 0

    import papermill as pm
    t_all = time.perf_counter()
    cache = cache_dir()
    cache_state = "empty" if folder_mib(cache) < 1 else "warm"      # at the runner's start: run_log.csv
    for nb, params, cfg in plan:
        out_dir = cfg.path("executed", "x").parent
        out = out_dir / nb.name
        stamp = out_dir / f".{nb.stem}.ok"
        fp = _fingerprint(nb, params, cfg)
        if not a.force and out.exists() and stamp.exists() and stamp.read_text() == fp:
            print(f"[run_all] {nb.name}: up to date, skipped (--force to re-run)")
            continue
        print(f"[run_all] {nb.name}  profile={a.profile}  params={params}")
        secs, mib = _execute(pm, nb, out, params, cfg, a.profile, cache, cache_state)
        atomic_write_text(stamp, fp)
        print(f"[run_all] {nb.name}: done in {secs:.0f} s, largest process {mib} MiB -> {_show(out)}")
    figs = plan[0][2].path("figures", "x").parent if plan else None
    print(f"[run_all] all done in {time.perf_counter() - t_all:.0f} s")
    if plan and plan[0][2].results_dir == "results" and (REPO_ROOT / "results" / "claims.csv").exists():
        write_report(["--write"])                           # the README's results section, from the tables
    if figs is not None:
        print(f"[run_all] figures: {figs}")
        for f in sorted(figs.glob("*.png")):
            print(f"  {_show(f)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
