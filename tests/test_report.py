"""The README's results section is generated from the committed result tables, number for number."""
import shutil

import pandas as pd
import pytest

from mars_lib.config import REPO_ROOT
from mars_lib.report import BEGIN, END, GLANCE_BEGIN, GLANCE_END, glance_section, replace_section, results_section

RESULTS = REPO_ROOT / "results"


def test_readme_results_section_equals_the_committed_tables():
    readme = (REPO_ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, "README lost its generated results section"
    committed = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert committed == results_section(RESULTS), (
        "README's results section differs from results/: run `.venv/bin/python -m mars_lib.report --write`")


def test_readme_glance_equals_the_committed_tables():
    readme = (REPO_ROOT / "README.md").read_text()
    assert GLANCE_BEGIN in readme and GLANCE_END in readme, "README lost its generated 'at a glance' block"
    assert readme[readme.index(GLANCE_BEGIN):readme.index(GLANCE_END) + len(GLANCE_END)] == glance_section(RESULTS), (
        "README's 'at a glance' block differs from results/: run `.venv/bin/python -m mars_lib.report --write`")


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
