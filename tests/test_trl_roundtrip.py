"""A MARS round around TRL (docs/trl.md): TRL's RewardTrainer trains a reward model, `mars allocate`
and `mars augment` read the folder it saved, and RewardTrainer trains again on the augmented set —
rounds as the authors ran them (fresh synthetic pairs each round, the model carried over)."""
import json

import pandas as pd
import pytest

trl = pytest.importorskip("trl")

from mars_lib.cli import main  # noqa: E402
from mars_lib.data.pairs import to_trl_jsonl  # noqa: E402
from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task  # noqa: E402


def _train(model_dir, data_file, out, tmp_path):
    """One RewardTrainer run (CPU, a handful of steps) from `model_dir`, saved to `out`."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    args = trl.RewardConfig(output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=8, num_train_epochs=1,
                            max_length=96, learning_rate=5e-5, logging_steps=1, save_strategy="no", report_to=[],
                            use_cpu=True, seed=0, eos_token=tok.eos_token or tok.sep_token,   # BERT-style: [SEP]
                            gradient_checkpointing=False,   # TRL turns it on: it only trades time for memory
                            bf16=False)                     # TRL's default; on a CPU bf16 autocast is slow
    ds = load_dataset("json", data_files=str(data_file), split="train")
    trainer = trl.RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    trainer.train()
    trainer.save_model(str(out))
    tok.save_pretrained(out)
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


@pytest.mark.slow                  # real models in child processes: the full suite (and CI) runs it
def test_two_mars_rounds_around_trl_reward_trainer(tmp_path, capsys):
    from mars_lib.pipeline.assets import minilm_dir
    task = load_task(DEFAULT_TASK_DIR, n_prompts=16)
    base, test = tmp_path / "base.jsonl", tmp_path / "test.jsonl"
    to_trl_jsonl(task.split("train"), base)
    to_trl_jsonl(task.split("test"), test)
    n_base = sum(1 for _ in open(base))
    model = str(minilm_dir())                                  # round 0 starts from the pretrained encoder
    for rnd in range(2):
        data = base if rnd == 0 else tmp_path / f"aug{rnd}.jsonl"
        if rnd > 0:                                            # MARS: allocate on the current RM, augment, retrain
            assert main(["allocate", "--pairs", str(base), "--rm", model, "--budget", str(n_base),
                         "--out", str(tmp_path / f"alloc{rnd}.csv"), "--seed", str(rnd)]) == 0
            alloc = pd.read_csv(tmp_path / f"alloc{rnd}.csv")
            assert alloc.budget.sum() == n_base and len(alloc) == n_base
            assert main(["augment", "--pairs", str(base), "--rm", model, "--budget", str(n_base), "--seed", str(rnd),
                         "--out", str(data)]) == 0
            rows = [json.loads(line) for line in open(data)]
            assert n_base < len(rows) <= 2 * n_base and rows[-1]["origin"] == "synthetic"
            assert set(rows[-1]) == {"prompt", "chosen", "rejected", "pair_id", "origin", "source_pair_id"}
        out = tmp_path / f"rm{rnd}"
        losses = _train(model, data, out, tmp_path)
        assert losses and all(loss == loss for loss in losses)      # trained, no NaN
        assert (out / "model.safetensors").exists() and (out / "config.json").exists()
        model = str(out)
    assert main(["score", "--pairs", str(test), "--rm", model, "--out", str(tmp_path / "scored.csv")]) == 0
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == sum(1 for _ in open(test)) and scored.reward_gap.notna().all()
    assert "accuracy" in capsys.readouterr().out
