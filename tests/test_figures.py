"""Every figure is drawn from saved tables alone (mars_lib.figures): on the committed results, without
loading a model, from tables changed on purpose, and under the names the notebooks save."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from mars_lib import figures
from mars_lib.figures import FIGURES, TABLES, draw_all

PNG = b"\x89PNG\r\n\x1a\n"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code(nb) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
                     if c["cell_type"] == "code")


def _write(results, table, df):
    p = results / table
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(p) if table.endswith(".parquet") else df.to_csv(p, index=False)


def _config(results, nb, **values):
    (results / nb).mkdir(parents=True, exist_ok=True)
    (results / nb / "config.json").write_text(json.dumps(values))


# (a) ------------------------------------------------------------------------------------------------


def test_figures_only_redraws_committed_results_without_models(tmp_path):
    res = tmp_path / "results"
    shutil.copytree(REPO / "results", res, ignore=shutil.ignore_patterns(
        "models", "executed", "*.safetensors", "dpo", "figures", "smoke"))
    expected = {n for n in FIGURES if all((res / t).exists() for t in TABLES[n])}
    assert len(expected) >= 10, f"the committed results hold the tables of only {sorted(expected)}"
    check = ("import sys; from mars_lib.pipeline.runner import main; rc = main(sys.argv[1:]); "
             "loaded = [m for m in ('transformers', 'torch', 'papermill', 'sentence_transformers') "
             "if m in sys.modules]; "
             "assert not loaded, f'model-loading modules imported: {loaded}'; sys.exit(rc)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", check, "--figures-only", "-p", "results_dir", str(res)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    drawn = {p.stem for p in (res / "figures").glob("*.png")}
    assert drawn == expected, (sorted(drawn ^ expected), proc.stdout)
    for name in expected:
        png = res / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
        assert str(png) in proc.stdout
    for name in set(FIGURES) - expected:
        assert f"skipped {name}: " in proc.stdout
    assert seconds < 60, f"--figures-only took {seconds:.0f} s"


# (b) ------------------------------------------------------------------------------------------------


def _win_rate_tables(res, means):
    _write(res, "05_downstream/win_rate_summary.csv", pd.DataFrame(
        {"a": ["mars_v1", "mars_v1"], "b": ["none", "uniform"], "mean": means, "lo": np.subtract(means, 0.01),
         "hi": np.add(means, 0.01), "se": 0.005, "df": 4.0, "n_seeds": 3, "prompts": 20}))
    _write(res, "05_downstream/bon_curve.csv", pd.DataFrame({"n": [1, 2, 3, 4, 5, 6], "kl_bon": 0.0, "gold": 1.0}))


def test_figure_follows_its_table(tmp_path):
    _win_rate_tables(tmp_path, [0.4, 0.6])
    fig = FIGURES["05_win_rates"](tmp_path)
    ax = fig.axes[0]
    assert [round(p.get_x() + p.get_width(), 6) for p in ax.patches] == [0.4, 0.6]      # bars from 0.5 to the rate
    assert ax.get_title().startswith("Best-of-6 win rates") and "20 prompts and 3 seeds" in ax.get_title()
    _win_rate_tables(tmp_path, [0.55, 0.45])
    ax = FIGURES["05_win_rates"](tmp_path).axes[0]
    assert [round(p.get_x() + p.get_width(), 6) for p in ax.patches] == [0.55, 0.45]


def test_figure_reads_the_saved_config(tmp_path):
    gg = pd.DataFrame({"pair_id": range(40), "split": ["train", "test"] * 20, "gold_gap": np.linspace(0, 3, 40),
                       "label_correct": [True, False, True, True] * 10})
    _write(tmp_path, "01_margins/gold_gaps.csv", gg)
    for beta in (1.0, 0.25):
        _config(tmp_path, "01_margins", beta=beta)
        ax = FIGURES["01_gold_gaps_label_noise"](tmp_path).axes[1]
        assert f"β={beta}" in [t.get_text() for t in ax.get_legend().get_texts()][1]
        assert ax.get_title() == f"Label noise (ceiling on test: {gg[gg.split == 'test'].label_correct.mean():.3f})"


def test_noise_ceiling_table_or_notebook_01s_on_the_same_task(tmp_path):
    task = {"task_dir": "data/t", "beta": 1.0, "label_seed": 0, "n_prompts": None}
    _config(tmp_path, "01_margins", **task)
    _config(tmp_path, "03_rm_training", **task)
    _write(tmp_path, "01_margins/task_summary.csv",
           pd.DataFrame({"split": ["train", "test"], "noise_ceiling": [0.7, 0.8]}))
    assert figures.task_noise_ceiling(tmp_path) == 0.8
    _config(tmp_path, "03_rm_training", **{**task, "beta": 0.5})
    with pytest.raises(FileNotFoundError, match="another task"):
        figures.task_noise_ceiling(tmp_path)
    _write(tmp_path, "03_rm_training/noise_ceiling.csv", pd.DataFrame({"split": ["test"], "noise_ceiling": [0.75]}))
    assert figures.task_noise_ceiling(tmp_path) == 0.75


def test_figures_of_tables_the_committed_results_lack(tmp_path):
    """The figures whose tables only a newer notebook run writes (or an optional section), from small tables."""
    from mars_lib.evaluation import ood
    rng = np.random.default_rng(0)
    n = 50
    d0 = rng.uniform(0.1, 1.1, n)
    _write(tmp_path, "02_self_refinement/refinement_distances.csv", pd.DataFrame(
        {"pair_id": range(n), "distance_original": d0, "distance_final": d0 + 0.1,
         "label_correct": rng.random(n) < 0.8}))
    _write(tmp_path, "02_self_refinement/refinement_fidelity.csv",
           pd.DataFrame({"distance_original": d0[:10], "distance_final": d0[:10] + 0.3}))
    _write(tmp_path, "02_self_refinement/refinement_summary.csv", pd.DataFrame({"threshold": [d0.mean()]}))
    _write(tmp_path, "02_self_refinement/fidelity_by_operator.csv", pd.DataFrame(
        {"operator": ["paraphrase", "refinement", "resample (gold)"], "label_agrees_with_gold": [0.8, 0.9, 0.6]}))
    _config(tmp_path, "04_curvature", tau_v1=0.1, tau_v2=0.5)
    _write(tmp_path, "04_curvature/base_gaps.csv",
           pd.DataFrame({"pair_id": range(n), "reward_gap": rng.normal(0, 2, n)}))
    _write(tmp_path, "04_curvature/tau_sweep.csv", pd.DataFrame(
        {"gap": ["abs", "abs", "signed", "signed"], "tau": [0.0, 1.0] * 2, "gap_scale": 1.0,
         "sigma_prime_ratio": [1, 1.1, 1, 1.2], "condition_ratio": [1, 0.9, 1, 0.8]}))
    _config(tmp_path, "03_rm_training", seeds=[3, 4])
    pp = pd.DataFrame([{"model": f"{s}_seed{seed}", "strategy": s, "seed": seed, "subset": sub, "section": sec,
                        "correct": bool(rng.random() < 0.6), "tie": False}
                       for s in ("none", "mars_v1") for seed in (3, 4)
                       for sub, sec in (("Natural", "LLMBar"), ("Adversarial-Neighbor", "LLMBar"),
                                        ("mt-bench-human", "MT"))
                       for _ in range(5)])
    _write(tmp_path, "03_rm_training/ood_eval.csv",
           pd.concat([ood.ood_accuracy(pp).assign(trained_on=t) for t in ("task", "chitchat")], ignore_index=True))
    rb = pd.DataFrame([{"strategy": s, "seed": seed, "trained_on": "chitchat", "section": sec, "value": rng.random()}
                       for s in ("none", "mars_v1") for seed in (0, 1) for sec in ("Chat", "Safety", "Core")])
    _write(tmp_path, "03_rm_training/rewardbench.csv", rb)
    _write(tmp_path, "03_rm_training/rewardbench_summary.csv",
           rb.groupby(["strategy", "section"], as_index=False).value.mean().rename(columns={"value": "mean"}))
    names = ["02_semantic_refine", "04_curvature", "03_ood", "03_rewardbench"]
    assert sorted(p.stem for p in draw_all(tmp_path, names)) == sorted(names)
    assert all((tmp_path / "figures" / f"{x}.png").read_bytes()[:8] == PNG for x in names)
    ax = FIGURES["03_ood"](tmp_path).axes[0]
    assert "seed 3" in ax.get_title()
    line = FIGURES["04_curvature"](tmp_path).axes[0].lines[0]               # σ′(Δ) over the saved gaps, sorted
    assert np.allclose(line.get_xdata(), np.sort(pd.read_csv(tmp_path / "04_curvature/base_gaps.csv").reward_gap))


def test_draw_all_skips_a_figure_without_its_tables(tmp_path, capsys):
    _win_rate_tables(tmp_path, [0.5, 0.5])
    assert [p.name for p in draw_all(tmp_path)] == ["05_win_rates.png"]
    assert "skipped 05_dpo: no 05_downstream/dpo_train_log.csv" in capsys.readouterr().out


# (c) ------------------------------------------------------------------------------------------------


def test_notebooks_save_exactly_the_registered_figures():
    saved = {}
    for nb in NOTEBOOKS:
        code = _code(nb)
        names = (re.findall(r'figures\.draw\(\s*"([^"]+)"', code)
                 + re.findall(r'plotting\.save\([^)]*"([^"]+)"\s*\)', code))
        for name in names:
            assert name in FIGURES, f"{nb.name} saves figure {name!r}, which mars_lib.figures.FIGURES lacks"
            assert name[:2] == nb.name[:2], f"{nb.name} saves {name!r}"
            saved[name] = nb.name
        assert "plt.subplots" not in code, f"{nb.name} still draws a figure itself"
    assert set(saved) == set(FIGURES), f"registered but drawn by no notebook: {sorted(set(FIGURES) - set(saved))}"
    for name, fn in FIGURES.items():
        assert fn.__name__ == f"fig_{name}"


def _saving_code(nb) -> str:
    """A notebook's code and the source of the pipeline stage modules it imports (`from mars_lib.pipeline
    import rm_training`): a computation cell calls one stage, which saves the tables (`_save(cfg, df, name)`)."""
    code = _code(nb)
    mods = {m.strip() for line in re.findall(r"^from mars_lib\.pipeline import (.+)$", code, re.M) for m in line.split(",")}
    paths = [REPO / "mars_lib" / "pipeline" / f"{m}.py" for m in sorted(mods)]
    return "\n".join([code, *(p.read_text(encoding="utf-8") for p in paths if p.exists())])


def test_every_table_a_figure_reads_is_one_a_notebook_saves():
    code = {nb.stem: _saving_code(nb) for nb in NOTEBOOKS}
    for name, tables in TABLES.items():
        for t in tables:
            if t == "claims.csv":                        # results/claims.csv: written by claims.write_claims
                assert "claims.write_claims(cfg)" in code["03_rm_training"], name
                continue
            folder, table = t.split("/")
            saved = f'cfg.path(OUT, "{table}")' in code[folder] or re.search(rf'"{re.escape(table)}"[,)]', code[folder])
            assert saved, f"{name} reads {t}, which {folder}.ipynb (or the stage module it calls) does not save"
