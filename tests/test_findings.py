"""Every notebook ends with a "What we found" section written from its tables (mars_lib.evaluation.findings)."""
import json

import pandas as pd
import pytest

from mars_lib.evaluation import findings
from mars_lib.pipeline.config import REPO_ROOT

RESULTS = REPO_ROOT / "results"


@pytest.mark.parametrize("nb", sorted((REPO_ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_ends_with_what_we_found(nb):
    cells = json.loads(nb.read_text())["cells"]
    heads = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("#")]
    last = "".join(cells[heads[-1]]["source"])
    assert last.startswith("## What we found"), (nb.name, last[:80])
    code_after = "".join("".join(c["source"]) for c in cells[heads[-1] + 1:] if c["cell_type"] == "code")
    assert code_after.strip(), f"{nb.name}: the findings are computed, not typed"


def test_findings_follow_the_tables(tmp_path):
    """The sentences carry the tables' numbers: change one and the sentence changes with it."""
    lines = findings.findings("01_margins", RESULTS)
    task = pd.read_csv(RESULTS / "01_margins" / "task_summary.csv").set_index("split")
    assert f"{task.loc['test', 'noise_ceiling']:.1%}" in lines[0]
    (tmp_path / "01_margins").mkdir()
    for name in ("task_summary.csv", "first_rm_metrics.csv"):
        (tmp_path / "01_margins" / name).write_bytes((RESULTS / "01_margins" / name).read_bytes())
    t = pd.read_csv(tmp_path / "01_margins" / "task_summary.csv")
    t.loc[t.split == "test", "noise_ceiling"] = 0.5
    t.to_csv(tmp_path / "01_margins" / "task_summary.csv", index=False)
    changed = findings.findings("01_margins", tmp_path)
    assert "50.0% of the test labels" in changed[0] and len(changed) == 1     # missing tables: their lines skipped
    for nb in findings.FINDINGS:
        assert findings.findings(nb, RESULTS), nb
