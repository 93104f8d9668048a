"""Which judge labels a task (`mars_lib.judges.task_judge`): re-labelling keeps the texts and maps every
score by judge identity; the committed task v3 is gold-judge-3's."""
import json

import numpy as np
import pandas as pd
import pytest

from mars_lib.data import relabel
from mars_lib.downstream import bon_set
from mars_lib.judges import task_judge
from mars_lib.judges.gold1 import FACETS
from mars_lib.data.gold_task import (DEFAULT_TASK_DIR, TaskSpec, build_task_folder, load_policy_samples, load_responses,
                            write_policy_samples)


class FakeJudge:
    """Deterministic facets from the text; `offset` tells two judges apart; counts judged rows."""

    def __init__(self, offset: float):
        self.offset, self.rows = offset, 0

    def facets(self, prompts, responses, finished):
        self.rows += len(responses)
        base = np.array([(len(r) % 11) / 11 for r in responses])
        return pd.DataFrame({k: np.clip(base + self.offset * (i + 1) / 10, 0, 1) for i, k in enumerate(FACETS)})

    @staticmethod
    def combine(f):
        return f[list(FACETS)].sum(axis=1).to_numpy()

    def score(self, prompts, responses, finished):
        return self.combine(self.facets(prompts, responses, finished))


@pytest.fixture
def source(tmp_path):
    """A three-prompt task folder labelled by "gold1" (fake), with policy samples and a Best-of-N set
    that also holds "gold3" scores."""
    resp = load_responses(DEFAULT_TASK_DIR)
    keep = resp.prompt_id.drop_duplicates().head(3)
    texts = resp[resp.prompt_id.isin(keep)].drop(columns=[c for c in resp if c.startswith("facet_") or c == "gold"])
    src = tmp_path / "src"
    src.mkdir()
    build_task_folder(TaskSpec(), texts.reset_index(drop=True), src, judge_name="gold1", judge=FakeJudge(0.0))
    ps = texts.head(5).assign(gold=np.arange(5.0))
    write_policy_samples(ps, src, "python -m mars_lib.data.gold_task samples --out src", 1.0, judge_name="gold1")
    bon = texts.head(6)[["prompt_id", "prompt", "split", "arm", "sample", "response", "finished"]].assign(
        n_tokens=3, gold=np.arange(6.0), gold3=10 + np.arange(6.0))
    bon_set.write_bon_set(bon, src, "python -m mars_lib.downstream.bon_set --n 2 --judges gold1 gold3 --out src", {},
                          task_judge="gold1")
    return src


def test_relabel_keeps_texts_and_maps_scores_by_judge(source, tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(relabel, "make_judge", lambda name, **kw: made.append(FakeJudge(0.5)) or made[-1])
    out = tmp_path / "v3"
    relabel.relabel_task(source, "gold3", out)
    old, new = load_responses(source), load_responses(out)
    man = new.attrs["manifest"]
    assert man["judge"] == "gold3" and man["judge_id"] == "gold-judge-3"
    assert man["relabelled_from"]["source_judge"] == "gold1"
    assert man["relabelled_from"]["source_responses_sha256"] == old.attrs["manifest"]["responses_sha256"]
    assert "--judge gold3" in man["regenerate"]
    assert new.response.tolist() == old.response.tolist() and new.prompt_id.tolist() == old.prompt_id.tolist()
    assert np.allclose(new.gold, FakeJudge(0.5).score(None, new.response.tolist(), None))
    assert not np.allclose(new.gold, old.gold)                     # really re-judged
    bon = bon_set.load_bon_set(out)
    assert bon.gold.tolist() == (10 + np.arange(6.0)).tolist()       # the source's gold3 column, reused
    assert bon.gold1.tolist() == np.arange(6.0).tolist()             # the source's own judge, now named
    assert "gold3" not in bon
    meta = json.loads((out / bon_set.MANIFEST).read_text())
    assert meta["judges"] == {"gold": "mars_lib.judges.gold3 (gold-judge-3)", "gold1": "mars_lib.judges.gold1 (gold-judge-1)"}
    ps = load_policy_samples(out)
    assert ps.response.tolist() == load_policy_samples(source).response.tolist()
    assert ps.gold.tolist() != list(np.arange(5.0)) and "--judge gold3" in json.loads(
        (out / "policy_samples.json").read_text())["regenerate"]
    assert sum(j.rows for j in made) == len(new) + len(ps)           # the Best-of-N draws were not judged again
    with pytest.raises(ValueError, match="differ"):
        relabel.relabel_task(source, "gold3", source)
    with pytest.raises(ValueError, match="unknown judge"):
        relabel.relabel_task(source, "gpt4", tmp_path / "x")


def test_manifest_names_the_judge(tmp_path):
    assert task_judge.judge_name_of({}) == "gold1"                   # task v2's manifest predates the field
    with pytest.raises(ValueError, match="unknown judge"):
        task_judge.judge_name_of({"judge": "human"})
    with pytest.raises(FileNotFoundError, match="manifest"):
        task_judge.task_judge_name(tmp_path)


def test_committed_task_is_labelled_by_the_independent_judge():
    """Task v3: the manifest names gold3, and `gold` is gold3's weighted facet sum; a few rows, and a
    few i.i.d. Best-of-N draws, re-judged by the real judges give the committed scores."""
    from mars_lib.judges.gold3 import GoldJudge3
    resp = load_responses(DEFAULT_TASK_DIR)
    assert task_judge.task_judge_name(DEFAULT_TASK_DIR) == "gold3"
    facets = resp[[f"facet_{k}" for k in FACETS]].rename(columns=lambda c: c[len("facet_"):])
    assert np.allclose(resp.gold, GoldJudge3.combine(facets))
    judge = task_judge.task_judge(DEFAULT_TASK_DIR)
    assert isinstance(judge, GoldJudge3)
    rows = resp.sample(4, random_state=0)
    assert np.allclose(judge.score(rows.prompt.tolist(), rows.response.tolist(), rows.finished.tolist()), rows.gold,
                       atol=1e-4)
    bon = bon_set.load_bon_set(DEFAULT_TASK_DIR).sample(3, random_state=0)
    assert np.allclose(judge.score(bon.prompt.tolist(), bon.response.tolist(), bon.finished.tolist()), bon.gold,
                       atol=1e-4)
    assert "gold1" in bon                                            # the old judge's second opinion
