"""The fine-tuned reward model (full and LoRA) on the offline MiniLM backbone: training, the shared
pair interface of the rounds loop, and save -> load giving identical scores."""
import numpy as np
import pandas as pd
import pytest
import torch

from mars_lib.pipeline.assets import minilm_dir
from mars_lib.pipeline.config import RunConfig
from mars_lib.reward_models.features import Pairs
from mars_lib.reward_models.finetune import FinetuneConfig, FinetunedRewardModel
from mars_lib.pipeline.arms import run_strategy

GOOD = ["Paris is the capital of France.", "Water boils at 100 degrees Celsius at sea level.",
        "The Earth orbits the Sun once a year.", "Seven times eight is fifty-six."]
BAD = ["banana banana banana banana", "I do not know, whatever.", "asdf qwer zxcv", "no no no no no no"]


def _df(n=16):
    rows = [{"pair_id": f"p{i}", "prompt": f"Question {i}?", "chosen": GOOD[i % 4], "rejected": BAD[(i + 1) % 4],
             "label_correct": True, "gold_chosen": 1.0, "gold_rejected": 0.0} for i in range(n)]
    return pd.DataFrame(rows)


def _cfg(**kw):
    base = dict(model=str(minilm_dir()), lr=5e-4, batch_size=4, grad_accum=2, max_length=64, seed=0, score_batch_size=8)
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module", autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.mark.parametrize("lora", [False, True])
def test_trains_and_reloads_to_identical_scores(tmp_path, lora):
    df = _df()
    m = FinetunedRewardModel(_cfg(lora=lora, lr=2e-3 if lora else 5e-4))
    before = m.reward_gap(df).mean()
    losses = m.fit(df, epochs=3, progress=False)
    after = m.reward_gap(df)
    assert losses[-1] < losses[0] and after.mean() > before          # it learns the obvious preference
    m.save(tmp_path / "rm")
    files = {p.name for p in (tmp_path / "rm").iterdir()}
    assert ("adapter_model.safetensors" if lora else "model.safetensors") in files
    assert not any(f.endswith(".bin") for f in files)                 # safetensors only
    m2 = FinetunedRewardModel.load(tmp_path / "rm")
    np.testing.assert_array_equal(m2.reward_gap(df), after)            # score head saved with the adapter


def test_lora_trains_adapters_and_head_only():
    m = FinetunedRewardModel(_cfg(lora=True))
    trainable = [n for n, p in m.model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert not any("word_embeddings" in n for n in trainable)


def test_scores_do_not_depend_on_batching():
    df = _df(10)
    a = FinetunedRewardModel(_cfg(score_batch_size=3)).reward_gap(df)
    b = FinetunedRewardModel(_cfg(score_batch_size=16)).reward_gap(df)
    np.testing.assert_allclose(a, b, atol=1e-5)                        # dynamic padding + attention mask


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="bf16"):
        FinetuneConfig(model="x", precision="bf16", device="cpu")
    with pytest.raises(ValueError, match="precision"):
        FinetuneConfig(model="x", precision="fp8")
    with pytest.raises(ValueError, match="batch_size"):
        FinetuneConfig(model="x", batch_size=0)
    with pytest.raises(FileNotFoundError, match="mars_finetune.json"):
        FinetunedRewardModel.load(tmp_path)


def test_rounds_loop_runs_a_finetuned_model():
    df = _df(12)
    empty = np.zeros((12, 0), np.float32)
    base = Pairs(df, empty, empty)
    pool_df = pd.concat([df.assign(pair_id=df.pair_id + f"-s{k}", source_id=df.pair_id) for k in range(2)],
                        ignore_index=True)
    pool = Pairs(pool_df, np.zeros((24, 0), np.float32), np.zeros((24, 0), np.float32))
    cfg = RunConfig.resolve("smoke", rounds=1, budget_ratio=1.0, seeds=[0])
    r = run_strategy("mars_v2", base, pool, {"test": base}, cfg, seed=0,
                     make_model=lambda s: FinetunedRewardModel(_cfg(seed=s)))
    assert isinstance(r.model, FinetunedRewardModel)
    assert r.allocations.budget.sum() == 12
    assert "accuracy" in set(r.history.metric) and not (r.history.split == "curvature").any()


@pytest.mark.parametrize("lora", [False, True])
def test_paper_rm_architecture_on_a_tiny_standin(tmp_path, lora):
    """The paper's RM is DeBERTa-v3 (deberta-v2 architecture): a tiny one saved with save_pretrained in
    the hub's format runs the same fine-tune / save / load path (LoRA on query_proj / value_proj)."""
    import standins
    src = standins.deberta(tmp_path)
    df = _df(8)
    m = FinetunedRewardModel(_cfg(model=str(src), lora=lora, lr=1e-3))
    losses = m.fit(df, epochs=2, progress=False)
    assert np.isfinite(losses).all()
    if lora:
        names = [n for n, p in m.model.named_parameters() if p.requires_grad]
        assert any("query_proj.lora_A" in n for n in names)
    gap = m.reward_gap(df)
    m.save(tmp_path / "rm")
    np.testing.assert_array_equal(FinetunedRewardModel.load(tmp_path / "rm").reward_gap(df), gap)


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_effective_batch(monkeypatch, capsys):
    """The memory-aware batch size: a micro-batch of more than 2 pairs 'runs out of memory' (a CUDA
    OOM raised by the forward), so the probe settles on 2 x 8 for the configured 8 x 2."""
    m = FinetunedRewardModel(_cfg(batch_size=8, grad_accum=2))
    forward = m.model.forward

    def limited(*a, **kw):
        if kw["input_ids"].shape[0] > 4:              # chosen + rejected of 2 pairs
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(*a, **kw)
    monkeypatch.setattr(m.model, "forward", limited)
    df = _df(8)
    ids = m._encode(list(df.chosen)), m._encode(list(df.rejected))
    assert m.fit_batch_probe(*ids) == 2
    assert (m.cfg.batch_size, m.cfg.grad_accum) == (2, 8)
    assert "effective batch 16 unchanged" in capsys.readouterr().out
    assert all(p.grad is None for p in m.model.parameters())
    assert np.isfinite(m.fit(df, epochs=1, progress=False)).all()   # trains at the size that fits
    monkeypatch.setattr(m.model, "forward", lambda *a, **kw: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")))
    with pytest.raises(RuntimeError, match="lower max_length"):
        m.fit_batch_probe(*ids)


def test_notebook_03_saves_fine_tuned_rms_that_04_and_05_reload(tmp_path):
    """save_models -> load_reward_models round trip for rm="full" and rm="head", and the one
    scoring call `model.score(prompts, responses, phi)` on both kinds."""
    from mars_lib.reward_models import checkpoints
    from mars_lib.reward_models.head import HeadConfig, HeadRewardModel, RewardModel
    from mars_lib.mars import RunResult
    cfg = RunConfig.resolve("cpu", rm="full", strategies=["none", "mars_v1"], seeds=[0], results_dir=str(tmp_path))
    df = _df(6)
    models = {(s, 0): FinetunedRewardModel(_cfg(seed=k)) for k, s in enumerate(cfg.strategies)}
    table = checkpoints.save_models({k: RunResult(m, pd.DataFrame(), pd.DataFrame()) for k, m in models.items()}, cfg)
    assert list(table.strategy) == ["none", "mars_v1"] and all((tmp_path.parent / p).is_dir() for p in table.path)
    loaded = checkpoints.load_reward_models(cfg)
    for k, m in models.items():
        assert isinstance(loaded[k], RewardModel)
        np.testing.assert_allclose(loaded[k].score(df.prompt, df.chosen),
                                   m.score(list(df.prompt), list(df.chosen)), rtol=0, atol=1e-6)
    head = HeadRewardModel(4, HeadConfig(seed=0))
    phi = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_array_equal(head.score(df.prompt, df.chosen, phi), head.score_features(phi))
    with pytest.raises(ValueError, match="features"):
        head.score(df.prompt, df.chosen)
    hcfg = RunConfig.resolve("cpu", strategies=["none"], seeds=[3], results_dir=str(tmp_path / "h"))
    head = HeadRewardModel(4, HeadConfig.from_run(hcfg, 3))
    head.fit(phi, phi[::-1].copy(), epochs=2)
    checkpoints.save_models({("none", 3): RunResult(head, pd.DataFrame(), pd.DataFrame())}, hcfg)
    back = checkpoints.load_reward_models(hcfg)[("none", 3)]
    np.testing.assert_array_equal(back.score(None, None, phi), head.score_features(phi))
    with pytest.raises(FileNotFoundError, match="rm='full'"):
        checkpoints.load_reward_models(RunConfig.resolve("cpu", rm="full", strategies=["uniform"], seeds=[0],
                                                         results_dir=str(tmp_path)))


@pytest.mark.parametrize("lora", [False, True])
def test_packed_batches_train_like_padded_ones(lora):
    """Packing changes the tensor layout, not the computation: same batches, dropout off, the loss
    per epoch and the trained scores agree with the padded run to float noise; the rows hold no padding
    beyond one row's tail (texts of very different lengths, so the padded run has much padding)."""
    from mars_lib.reward_models.packing import pack_rows
    df = _df(16).assign(chosen=lambda d: [c * (1 + i % 5) for i, c in enumerate(d.chosen)])
    runs = {}
    for packing in (False, True):
        m = FinetunedRewardModel(_cfg(packing=packing, dropout=False, lora=lora, lora_dropout=0.0, lr=2e-3 if lora else 5e-4))
        runs[packing] = (m.fit(df, epochs=3, progress=False), m.reward_gap(df))
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs[True][1], runs[False][1], atol=1e-4)
    assert runs[True][0][-1] < runs[True][0][0]                      # and it learns
    rows = pack_rows([50, 10, 30, 20, 40, 64], 64)
    assert sorted(i for r in rows for i in r) == list(range(6))
    assert all(sum([50, 10, 30, 20, 40, 64][i] for i in r) <= 64 for r in rows) and len(rows) == 4


def test_packing_refuses_an_architecture_it_cannot_pack():
    from mars_lib.reward_models.packing import check_packable

    class Other(torch.nn.Module):
        config = type("C", (), {"model_type": "llama"})()
    with pytest.raises(ValueError, match="without packing"):
        check_packable(Other())
