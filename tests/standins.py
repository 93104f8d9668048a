"""Tiny local stand-ins for the paper profile's hub models and datasets, saved in the hub's formats
(issue 7): only the identifiers differ from the paper profile, so every loader and step runs offline.

Models (random weights, save_pretrained): an MPNet sentence encoder (all-mpnet-base-v2's
architecture), a DeBERTa-v2 sequence classifier (DeBERTa-v3-base's), a T5 paraphraser (the
authors' T5's) and a Llama chat LM (TinyLlama's). Datasets: HH-RLHF (train / test .jsonl.gz of
chosen / rejected dialogues) and RewardBench (`raw` and `filtered` splits declared in the README's
YAML header, as on the hub), both filled with real texts from the committed gold task.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from mars_lib.pipeline.assets import minilm_dir, smollm2_dir


def _build(root: Path, name: str, tokenizer_dir, make) -> Path:
    """make(tokenizer) -> a seeded random model, saved with its tokenizer under root/name."""
    from transformers import AutoTokenizer
    out = Path(root) / name
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    make(tok).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def mpnet(root: Path) -> Path:
    from transformers import MPNetConfig, MPNetModel
    return _build(root, "mpnet", minilm_dir(), lambda tok: MPNetModel(MPNetConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=300)))


def deberta(root: Path) -> Path:
    """DeBERTa-v3's hub layout: config + safetensors weights, and the tokenizer only as a
    SentencePiece `spm.model` with a two-line tokenizer_config.json (no tokenizer.json): loading it
    converts the spm model, which needs sentencepiece and protobuf (the `paper` extra). The spm
    model here is a 800-piece unigram model trained on the task's texts."""
    import sentencepiece as spm
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer
    out = Path(root) / "deberta"
    out.mkdir(parents=True, exist_ok=True)
    pairs = _task_pairs(300)
    corpus = Path(root) / "spm-corpus.txt"
    corpus.write_text("\n".join(" ".join(t.split()) for t in [*pairs.prompt, *pairs.chosen, *pairs.rejected]))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "spm"), vocab_size=800, model_type="unigram",
                                   pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                                   eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols=["[MASK]"],
                                   minloglevel=2, num_threads=1)
    (out / "spm.vocab").unlink()
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "vocab_type": "spm"}))
    tok = DebertaV2Tokenizer.from_pretrained(out)
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(DebertaV2Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, relative_attention=True, position_buckets=32, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, num_labels=1, pad_token_id=tok.pad_token_id)).save_pretrained(out)
    return out


def t5(root: Path) -> Path:
    from transformers import T5Config, T5ForConditionalGeneration
    return _build(root, "t5", minilm_dir(), lambda tok: T5ForConditionalGeneration(T5Config(
        vocab_size=len(tok), d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16,
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)))


def llama(root: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    return _build(root, "llama", smollm2_dir(), lambda tok: LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2)))


def _task_pairs(n: int):
    from mars_lib.pipeline.config import RunConfig
    from mars_lib.data.gold_task import load_task
    task = load_task(RunConfig().task_path, beta=1.0, label_seed=0)
    return task.pairs.drop_duplicates("prompt").head(n).reset_index(drop=True)


def hh_rlhf(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """Anthropic/hh-rlhf's layout: train.jsonl.gz and test.jsonl.gz of {"chosen", "rejected"} dialogues."""
    out = Path(root) / "hh-rlhf"
    out.mkdir(parents=True, exist_ok=True)
    pairs = _task_pairs(n_train + n_test)
    dia = lambda p, r: f"\n\nHuman: {p}\n\nAssistant: {r}"            # noqa: E731
    for split, part in (("train", pairs.iloc[:n_train]), ("test", pairs.iloc[n_train:])):
        with gzip.open(out / f"{split}.jsonl.gz", "wt", encoding="utf-8") as f:
            for r in part.itertuples():
                f.write(json.dumps({"chosen": dia(r.prompt, r.chosen), "rejected": dia(r.prompt, r.rejected)}) + "\n")
    return out


def reward_bench(root: Path, per_subset: int = 2) -> Path:
    """allenai/reward-bench's layout: splits `raw` and `filtered` declared in the README's YAML header,
    rows {id, prompt, chosen, rejected, subset, ...}; `raw` also holds a subset outside the sections."""
    from mars_lib.evaluation.rewardbench import SECTION_OF
    out = Path(root) / "reward-bench"
    (out / "data").mkdir(parents=True, exist_ok=True)
    subsets = list(SECTION_OF)
    pairs = _task_pairs(per_subset * (len(subsets) + 1))
    rows = [{"id": i, "prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected,
             "subset": (subsets + ["donotanswer-extra"])[i // per_subset], "chosen_model": "x", "rejected_model": "y"}
            for i, r in enumerate(pairs.itertuples())]
    for split, part in (("raw", rows), ("filtered", [r for r in rows if r["subset"] in SECTION_OF])):
        with open(out / "data" / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    (out / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n"
                                   "  - split: raw\n    path: data/raw.jsonl\n"
                                   "  - split: filtered\n    path: data/filtered.jsonl\n---\n# stand-in\n")
    return out
