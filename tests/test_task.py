"""The offline task: noisy labels follow the BT noise model; no prompt leaks across splits."""
import math

import numpy as np
import pandas as pd
import pytest

from mars_lib.data.prompts import is_standalone_question, split_prompts
from mars_lib.data.gold_task import DEFAULT_TASK_DIR, TaskError, bt_label_prob, load_responses, load_task, make_pairs


def _fake_responses(n_prompts=300, k=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        for a in range(k):
            rows.append({"prompt_id": f"p{p}", "prompt": f"question {p}?", "response": f"answer {p}-{a}",
                         "response_id": f"p{p}-{a}", "split": "train", "arm": str(a), "gold": rng.normal(0, 2)})
    return pd.DataFrame(rows)


def test_labels_follow_noise_model_statistically():
    resp = _fake_responses()
    beta = 1.5
    pairs = make_pairs(resp, beta=beta, seed=7)
    gap = (pairs.gold_chosen - pairs.gold_rejected).abs().to_numpy()
    expected = bt_label_prob(gap, 0.0, beta)            # P(label agrees with gold) per pair
    n, observed = len(pairs), pairs.label_correct.sum()
    mean, var = expected.sum(), (expected * (1 - expected)).sum()
    z = (observed - mean) / math.sqrt(var)
    assert abs(z) < 3.5, f"label agreement {observed}/{n} vs expected {mean:.1f} (z = {z:.2f})"
    # and not trivially: with tiny beta labels are (almost) noiseless, with huge beta they are coin flips
    assert make_pairs(resp, beta=1e-6, seed=1).label_correct.mean() > 0.999
    assert abs(make_pairs(resp, beta=1e6, seed=1).label_correct.mean() - 0.5) < 0.03


def test_beta_must_be_positive():
    with pytest.raises(ValueError):
        bt_label_prob([1.0], [0.0], 0.0)


def test_split_has_no_prompt_leak():
    df = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(100)], "prompt": [f"q{i}" for i in range(100)],
                       "source": ["a"] * 50 + ["b"] * 50})
    out = split_prompts(df, seed=3)
    assert out.groupby("prompt_id").split.nunique().max() == 1
    assert out.split.value_counts().to_dict() == {"train": 60, "val": 20, "test": 20}


def test_committed_task_loads_and_has_no_leak():
    assert (DEFAULT_TASK_DIR / "manifest.json").exists(), "the offline task is committed in data/"
    task = load_task(DEFAULT_TASK_DIR, beta=1.0)
    assert len(task.split("test")) >= 2000                   # seed-to-seed std measurable (issue 3)
    assert task.responses.groupby("prompt_id").split.nunique().max() == 1
    by_split = {s: set(task.split(s).prompt) for s in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["val"])
    assert 0.5 < task.noise_ceiling("test") < 1.0


def test_corrupted_task_file_is_detected(tmp_path):
    if not (DEFAULT_TASK_DIR / "manifest.json").exists():
        pytest.skip("committed task not built yet")
    for f in ("manifest.json", "responses.parquet"):
        (tmp_path / f).write_bytes((DEFAULT_TASK_DIR / f).read_bytes())
    data = bytearray((tmp_path / "responses.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "responses.parquet").write_bytes(bytes(data))
    with pytest.raises(TaskError, match="checksum"):
        load_responses(tmp_path)


@pytest.mark.parametrize("text, ok", [
    ("What is your favorite book to read on a long flight?", True),
    ("How are you doing today, my friend?", False),     # small talk
    ("What did you think of that one?", False),         # points back at the conversation
    ("lol", False),
])
def test_standalone_question_filter(text, ok):
    assert is_standalone_question(text) is ok


def test_committed_policy_samples_are_train_prompts_only():
    from mars_lib.data.gold_task import load_policy_samples
    ps = load_policy_samples(DEFAULT_TASK_DIR)
    task = load_task(DEFAULT_TASK_DIR, beta=1.0)
    assert set(ps.prompt_id) <= set(task.split("train").prompt_id)
    assert (ps.groupby("prompt_id").size() == 6).all() and ps.response.str.len().gt(0).mean() > 0.95



def test_redraw_labels_swaps_pairs_and_their_synthetic_children():
    """Each seed's label draw: a pair keeps its orientation with P = σ((g_c − g_r)/β); a swapped
    source's pool rows are swapped too; features follow the texts."""
    from mars_lib.reward_models.features import Pairs
    from mars_lib.data.gold_task import bt_label_prob, redraw_labels
    rng = np.random.default_rng(0)
    n = 4000
    gc, gr = rng.normal(size=n), rng.normal(size=n)
    base = Pairs(pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "prompt": "x", "chosen": [f"c{i}" for i in range(n)],
                               "rejected": [f"r{i}" for i in range(n)], "gold_chosen": gc, "gold_rejected": gr,
                               "label_correct": gc >= gr}),
                 rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32))
    pool = base.take(np.repeat(np.arange(n), 2))
    pool.df["source_id"] = np.repeat(base.df.pair_id.to_numpy(), 2)
    b2, p2, swap = redraw_labels(base, pool, beta=1.0, seed=(0, 3))
    expected = 1 - bt_label_prob(gc, gr, 1.0)
    assert abs(swap.mean() - expected.mean()) < 4 * np.sqrt((expected * (1 - expected)).sum()) / n
    np.testing.assert_array_equal(b2.df.chosen.to_numpy(), np.where(swap, base.df.rejected, base.df.chosen))
    np.testing.assert_array_equal(b2.phi_c, np.where(swap[:, None], base.phi_r, base.phi_c))
    assert (b2.df.label_correct == (b2.df.gold_chosen >= b2.df.gold_rejected)).all()
    np.testing.assert_array_equal(p2.df.chosen.to_numpy()[::2], b2.df.chosen.to_numpy())
    again = redraw_labels(base, pool, beta=1.0, seed=(0, 3))[2]
    other = redraw_labels(base, pool, beta=1.0, seed=(0, 4))[2]
    assert (again == swap).all() and (other != swap).any()
