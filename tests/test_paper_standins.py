"""The paper profile's hub models, as tiny local stand-ins saved with save_pretrained in the hub's
formats (issue 7): an MPNet sentence encoder (all-mpnet-base-v2's architecture) and a Llama chat
policy (TinyLlama's). Only the identifiers differ from the paper profile; every loader and step runs.
The builders are in standins.py; the DeBERTa-v2 reward model stand-in is tested in test_finetune.py
and every notebook of the paper profile on all stand-ins in test_paper_profile.py."""
import numpy as np
import pytest
import torch

from mars_lib.pipeline.config import RunConfig


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    import standins as build
    root = tmp_path_factory.mktemp("standins")
    build.mpnet(root)
    build.llama(root)
    return root


def _paper(standins, tmp_path, **kw):
    kw = {"encoder": str(standins / "mpnet"), "policy_model": str(standins / "llama"), **kw}
    return RunConfig.resolve("paper", device="cpu", precision="fp32", threads=2, n_prompts=12, seeds=[0], offline=True,
                             results_dir=str(tmp_path / "results"), **kw)


def test_paper_encoder_standin_embeds_and_measures_distance(standins, tmp_path):
    from mars_lib.pipeline import context
    from mars_lib.synthetic.refine import semantic_distance
    ctx = context.setup(_paper(standins, tmp_path))
    assert ctx.encoder.encoder_id.startswith(str(standins / "mpnet") + "@")
    e = ctx.encoder.embed(["a first text", "another one"], progress=False)
    assert e.shape == (2, 32) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    d = semantic_distance(ctx.encoder, ["same words here"], ["same words here"])
    assert abs(d[0]) < 1e-5


@pytest.mark.slow                  # real models in child processes: the full suite (and CI) runs it
def test_paper_policy_standin_generates_and_trains_by_dpo(standins, tmp_path):
    """The paper profile's policy path on a tiny Llama: policy_model loads it, DPO trains it on RM
    labels, and each policy answers held-out prompts (dpo_downstream end to end)."""
    from mars_lib.downstream import dpo_stage
    from mars_lib.pipeline import context
    from mars_lib.reward_models.head import HeadConfig, HeadRewardModel
    cfg = _paper(standins, tmp_path, encoder="minilm", strategies=["none", "mars_v1"], dpo_strategies=["none", "mars_v1"],
                 dpo_seeds=[0], dpo_train_prompts=4, dpo_eval_prompts=2)
    ctx = context.setup(cfg)
    model, tok, model_id = context.policy_model(cfg)
    assert type(model).__name__ == "LlamaForCausalLM" and model_id.startswith(str(standins / "llama"))
    heads = {}
    for s, w in (("none", 1.0), ("mars_v1", -1.0)):                  # two RMs that disagree on every pair
        m = HeadRewardModel(ctx.encoder.dim, HeadConfig(seed=0))
        with torch.no_grad():
            m.net.weight.copy_(w * torch.linspace(-1, 1, ctx.encoder.dim)[None])
        heads[(s, 0)] = m
    out = dpo_stage.dpo_downstream(ctx, heads, progress=False)
    lab = out["labels"].pivot(index="prompt_id", columns="strategy", values="a_preferred")
    assert len(lab) == 4 and (lab["none"] != lab["mars_v1"]).all()
    assert set(out["answers"].policy) == {"base", "none_seed0", "mars_v1_seed0"}
    assert out["answers"].groupby("policy").size().eq(2).all() and out["answers"].gold.notna().all()
    assert np.isclose(out["train_log"].groupby("strategy").loss.first(), np.log(2), atol=1e-4).all()
    # a rerun reuses the saved adapters (no training) and gives the same answers
    again = dpo_stage.dpo_downstream(ctx, heads, progress=False)
    assert again["answers"].response.tolist() == out["answers"].response.tolist()


def test_paper_paraphraser_standin_builds_the_pool_and_caches(standins, tmp_path, monkeypatch):
    """The authors' T5 paraphraser path on a tiny T5 saved with save_pretrained: beam search, 5 x 5
    pool per source, dedup counted, and a rerun served from the cache (no generate call)."""
    import pandas as pd

    from mars_lib.synthetic import paraphrase
    from mars_lib.synthetic.builders import ParaphraseOp, build_pool
    monkeypatch.setenv("MARS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(paraphrase, "_SEQ2SEQ", {})
    import standins as build
    build.t5(tmp_path)
    src = pd.DataFrame({"pair_id": ["p0", "p1"], "prompt": ["How do I boil an egg?", "Name a colour."],
                        "chosen": ["Put it in boiling water for nine minutes.", "Blue."],
                        "rejected": ["Eggs are nice.", "I do not know any."]})
    op = ParaphraseOp(n=3, paraphrase_prompt=True, model=str(tmp_path / "t5"))
    pool = build_pool(src, op, progress=False)
    p = paraphrase.seq2seq_paraphraser(str(tmp_path / "t5"))
    assert p.calls >= 1 and len(pool) > 0 and set(pool.source_id) <= {"p0", "p1"}
    assert pool.groupby("source_id").size().max() <= 9
    assert not ((pool.chosen == pool.rejected).any())
    calls = p.calls
    monkeypatch.setattr(paraphrase, "_SEQ2SEQ", {})                  # a fresh process: model reloaded, cache kept
    again = build_pool(src, op, progress=False)
    assert paraphrase.seq2seq_paraphraser(str(tmp_path / "t5")).calls == 0 and calls > 0
    pd.testing.assert_frame_equal(pool, again)


def test_llm_judge_win_rates_on_a_standin(standins, tmp_path):
    """The pluggable LLM judge (randomized A/B order) for the paper profile, on the tiny Llama."""
    import pandas as pd

    from mars_lib.downstream import dpo_stage
    cfg = _paper(standins, tmp_path, judge_model=str(standins / "llama"))
    answers = pd.DataFrame({"policy": ["p", "p", "q", "q"], "prompt_id": ["x", "y", "x", "y"],
                            "prompt": ["Say hi.", "Name a fruit.", "Say hi.", "Name a fruit."],
                            "response": ["Hi there!", "Apple.", "Hello.", "A banana, probably."]})
    wr = dpo_stage.llm_judge_win_rates(cfg, answers, [("p", "q"), ("q", "p")])
    assert list(wr.n) == [2, 2] and (wr.judge == cfg.judge_model).all()
    assert (wr.wins + wr.ties + wr.losses == 2).all() and wr.win_rate.isin([0, 0.25, 0.5, 0.75, 1]).all()
    with pytest.raises(ValueError, match="judge_model"):
        dpo_stage.llm_judge_win_rates(_paper(standins, tmp_path), answers, [("p", "q")])
