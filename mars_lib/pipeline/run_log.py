"""What each notebook run cost: wall time and the largest process's peak memory, one row per executed
notebook in `<results_dir>/run_log.csv` (appended by the runner, never rewritten).

The peak is the largest resident set of any process under the runner while the notebook ran: the
Jupyter kernel, and the child processes it starts (GGUF conversions, the distributed workers). It is
read two ways and the larger kept: `VmHWM` (the kernel's own high-water mark, exact up to the last
poll) of every descendant, polled every half second from /proc; and `getrusage(RUSAGE_CHILDREN)`,
which, once the kernel has been shut down and reaped, holds the exact peak of the largest reaped
descendant — the figure GNU time's "Maximum resident set size" reports. Outside Linux the column is
empty. `cache_state` says whether the cache folder was empty when the runner started, so a reader can
pick the runs "from empty caches" (what a fresh clone pays) apart from warm reruns."""
from __future__ import annotations

import csv
import os
import resource
import threading
import time
from pathlib import Path

import pandas as pd

from mars_lib.pipeline.tables import git_state

FIELDS = ["finished", "commit", "dirty", "profile", "notebook", "seconds", "peak_rss_mib", "cache_state",
          "cache_mib_before", "cache_dir"]


def _children_of() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue                                      # the process ended while we looked
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux; [] where /proc is missing)."""
    if not Path("/proc").is_dir():
        return []
    kids, out, todo = _children_of(), [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _hwm_kib(pid: int) -> int:
    try:
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PeakRSS:
    """`with PeakRSS() as p: ...` then `p.mib`: the largest process below this one while the block ran
    (None where neither /proc nor getrusage can tell)."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.kib = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        for pid in descendants(os.getpid()):
            self.kib = max(self.kib, _hwm_kib(pid))

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakRSS":
        self._reaped_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss     # KiB on Linux
        if reaped > self._reaped_before:          # a descendant reaped during the block set a new maximum
            self.kib = max(self.kib, reaped)

    @property
    def mib(self) -> float | None:
        return round(self.kib / 1024, 1) if self.kib else None


def folder_mib(path: Path) -> float:
    """Bytes under `path` in MiB (0 for a missing folder)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return round(total / 2**20, 1)


def append_run(results_dir: Path, **row) -> Path:
    """Append one notebook run to `<results_dir>/run_log.csv` (the header written with the first row)."""
    path = Path(results_dir) / "run_log.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    git = git_state()
    row = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": git["commit"], "dirty": git["dirty"], **row}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k) for k in FIELDS})
    return path


def cold_cost_line(results_dir: Path, profile: str = "cpu", limit_mib: float = 4096) -> str | None:
    """One sentence for the README: each notebook's latest run of `profile` from empty caches, from a clean
    tree (time and largest process), or None when the log has no such run."""
    path = Path(results_dir) / "run_log.csv"
    if not path.exists():
        return None
    log = pd.read_csv(path)
    log = log[(log.profile == profile) & (log.cache_state == "empty") & (log.dirty.astype(str) == "False")]
    if log.empty:
        return None
    last = log.sort_values("finished").groupby("notebook").tail(1).sort_values("notebook")
    over = last[last.peak_rss_mib > limit_mib]
    commits = ", ".join(sorted({c[:7] for c in last.commit}))
    return (f"- Cost from empty caches (`{path.parent.name}/run_log.csv`, the latest clean `{profile}` run of each notebook, "
            f"commit {commits}): " + ", ".join(f"{r.notebook[:2]} {r.seconds / 60:.1f} min / {r.peak_rss_mib:,.0f} MiB"
                                               for r in last.itertuples())
            + " (wall time / largest process); " + ("every notebook within 4 GiB." if over.empty else
                                                    f"over 4 GiB: {', '.join(over.notebook.str[:2])}."))
