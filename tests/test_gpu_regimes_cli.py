"""bench/gpu_regimes.py's command line (no training: seconds)."""
import sys

from mars_lib.pipeline.config import REPO_ROOT


def test_the_cpu_profile_is_named_and_its_flags_still_override():
    """`bench/gpu_regimes.py cpu` is the fine-tuned CPU regime's one command: its preset's arms are all
    registered (MARS at a target ESS/N among them) and a flag given beside it wins."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import gpu_regimes
    a = gpu_regimes.parse(["cpu"])
    assert a.n_base == 32 and a.device == "cpu" and a.eval_last_only and len(a.seeds) >= 5
    assert "mars_v1@ess0.5" in a.strategies and "uniform_stratified" in a.strategies
    assert str(a.out).endswith("cpu_regimes/minilm") and a.model.name == "minilm"
    b = gpu_regimes.parse(["cpu", "--seeds", "0", "--n-base", "8"])
    assert b.seeds == [0] and b.n_base == 8 and b.rounds == 2
    assert gpu_regimes.parse(["run"]).n_base is None            # the preset only applies to `cpu`
