"""The generated results (docs/results.md, the README's glance) come from the committed tables, number for number."""
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest


from mars_lib.pipeline.config import REPO_ROOT
from mars_lib.pipeline.report import (BEGIN, END, GLANCE_BEGIN, GLANCE_END, RESULTS_DOC, glance_section, replace_section,
                             results_section)

RESULTS = REPO_ROOT / "results"


def test_readme_results_section_equals_the_committed_tables():
    readme = (REPO_ROOT / RESULTS_DOC).read_text()
    assert BEGIN in readme and END in readme, f"{RESULTS_DOC} lost its generated results section"
    committed = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert committed == results_section(RESULTS), (
        f"{RESULTS_DOC} differs from results/: run `.venv/bin/python -m mars_lib.pipeline.report --write`")


def test_section_does_not_depend_on_what_was_registered_first():
    """Another test may register derived arms (v2 before v1, another ESS) before the tables are worded:
    the row order comes from claims.csv, so the section is the same (a fresh process, as in the full suite)."""
    code = ("from mars_lib import strategies\n"
            "for n in ('mars_v2@ess0.3', 'mars_v2@ess0.5', 'mars_v1@0.7', 'mars_v1@ess0.5'): strategies.get(n)\n"
            "from mars_lib.pipeline.report import results_section\n"
            "from mars_lib.pipeline.config import REPO_ROOT\n"
            "print(results_section(REPO_ROOT / 'results'), end='')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout
    assert out == results_section(RESULTS)


def test_readme_glance_equals_the_committed_tables():
    readme = (REPO_ROOT / "README.md").read_text()
    assert GLANCE_BEGIN in readme and GLANCE_END in readme, "README lost its generated 'at a glance' block"
    assert readme[readme.index(GLANCE_BEGIN):readme.index(GLANCE_END) + len(GLANCE_END)] == glance_section(RESULTS), (
        "README's 'at a glance' block differs from results/: run `.venv/bin/python -m mars_lib.pipeline.report --write`")


def test_section_follows_the_tables(tmp_path):
    """Change one number in claims.csv and the section changes with it (the test above can fail)."""
    shutil.copytree(RESULTS / "03_rm_training", tmp_path / "03_rm_training",
                    ignore=shutil.ignore_patterns("models", "*.parquet", "chitchat", "hh-rlhf"))
    claims = pd.read_csv(RESULTS / "claims.csv")
    before = results_section_of(tmp_path, claims)
    row = claims.index[(claims.rm == "head") & (claims.metric == "accuracy")][0]
    claims.loc[row, "effect"] += 0.5
    after = results_section_of(tmp_path, claims)
    assert before != after and f"{claims.loc[row, 'effect']:+.3f}" in after


def results_section_of(folder, claims):
    claims.to_csv(folder / "claims.csv", index=False)
    return results_section(folder)


def test_replace_section_needs_the_markers():
    with pytest.raises(ValueError, match="no generated results section"):
        replace_section("# README without markers", "x")
    text = f"a\n{BEGIN}\nold\n{END}\nb"
    assert replace_section(text, f"{BEGIN}\nnew\n{END}") == f"a\n{BEGIN}\nnew\n{END}\nb"


def _with_adjusted_verdicts(claims):
    """The committed claims table in the new form (p, p_adj, delta; `mars_lib.evaluation.verdicts.decide`), with one
    row marked identical and one row folded into another, as `claims_table` does for identical arms."""
    import numpy as np

    from mars_lib.evaluation import stats, verdicts
    c = claims.assign(se=(claims.hi - claims.lo) / (2 * 1.96), df=np.inf)
    c["p"] = [stats.p_value(e, s, d) for e, s, d in zip(c.effect, c.se, c.df)]
    c["delta"] = [verdicts.smallest_effect(m) for m in c.metric]
    head = (c.rm == "head") & (c.track == "gold")
    c.loc[(c.rm == "head") & (c.track == "chitchat") & (c.claim_id == "mars_v1>easy_first"), "verdict"] = "identical"
    c.loc[head & (c.claim_id == "mars_v1>none_matched"), "method"] += \
        "; reweight identical to none_matched (mars_v1>reweight not repeated)"
    c = c[~(head & (c.claim_id == "mars_v1>reweight"))]
    return verdicts.decide(c.drop(columns="verdict").assign(verdict=c.verdict.where(c.verdict == "identical")))


def test_section_shows_adjusted_p_and_the_new_verdicts(tmp_path):
    """A claims table with p_adj: every cell names its verdict (held / not held / equivalent / inconclusive /
    identical) and its BH-adjusted p; a row folded into another says which; changing one p changes the text."""
    from mars_lib.evaluation.stats import VERDICTS
    shutil.copytree(RESULTS / "03_rm_training", tmp_path / "03_rm_training",
                    ignore=shutil.ignore_patterns("models", "*.parquet", "chitchat", "hh-rlhf"))
    claims = _with_adjusted_verdicts(pd.read_csv(RESULTS / "claims.csv"))
    assert {"equivalent", "identical", "inconclusive"} <= set(claims.verdict)
    section = results_section_of(tmp_path, claims)
    head = claims[(claims.rm == "head") & (claims.metric == "accuracy")]
    for r in head.itertuples():
        cell = ("**identical**" if r.verdict == "identical" else f"**{r.verdict}** (p_adj {r.p_adj:.3f}, MDE {r.mde:.3f})")
        assert f"{r.effect:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}] {cell}" in section, r
    assert "as mars_v1>none_matched (reweight identical to none_matched)" in section
    assert "MARS v1 beats reweighting the base pairs" in section                   # the folded claim keeps its line
    counts = section[section.index("Verdicts over all claims"):].split("\n")[0]
    named = re.findall(r"\d+ (not held|held|equivalent|inconclusive|identical)", counts.split("head: ")[1])
    assert named == sorted(named, key=VERDICTS.index) and "equivalent" in named  # reported in VERDICTS order
    row = head.index[head.verdict == "equivalent"][0]
    claims.loc[row, "p_adj"] = 0.5
    assert results_section_of(tmp_path, claims) != section
