"""The practitioners' command line, end to end on real task pairs (MiniLM features, seconds)."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from mars_lib.cli import main
from mars_lib.data.pairs import to_trl_jsonl
from mars_lib.data.gold_task import DEFAULT_TASK_DIR, load_task


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    task = load_task(DEFAULT_TASK_DIR, n_prompts=12)
    p = tmp_path_factory.mktemp("cli") / "pairs.jsonl"
    to_trl_jsonl(task.split("train"), p)
    return p


def test_train_score_allocate_augment(pairs_file, tmp_path, capsys):
    rm = tmp_path / "rm"
    n = sum(1 for _ in open(pairs_file))
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "3"]) == 0
    assert (rm / "head.safetensors").exists() and json.loads((rm / "head.json").read_text())["pairs"] == n
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]) == 0
    scored = pd.read_csv(tmp_path / "s.csv")
    assert len(scored) == n and (scored.reward_gap == scored.reward_chosen - scored.reward_rejected).all()
    assert main(["allocate", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "50", "--version", "v2",
                 "--out", str(tmp_path / "a.csv")]) == 0
    assert pd.read_csv(tmp_path / "a.csv").budget.sum() == 50
    assert main(["augment", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "30",
                 "--out", str(tmp_path / "aug.jsonl")]) == 0
    rows = pd.DataFrame([json.loads(l) for l in open(tmp_path / "aug.jsonl")])
    assert n < len(rows) <= n + 30 and set(rows) == {"prompt", "chosen", "rejected", "pair_id", "origin", "source_pair_id"}
    orig, syn = rows[rows.origin == "original"], rows[rows.origin == "synthetic"]
    assert len(orig) == n and (orig.pair_id == orig.source_pair_id).all() and len(syn) == len(rows) - n
    assert set(syn.source_pair_id) <= set(orig.pair_id) and syn.pair_id.is_unique


def test_augment_keeps_extra_columns_and_respends_a_shortfall(tmp_path, capsys):
    """The input's other columns reach every output row (a synthetic row gets its source's); pairs whose
    texts cannot be paraphrased (one-word, non-English) pass their budget to the others: exactly B made."""
    rm = tmp_path / "rm"
    rows = [{"prompt": f"How do I care for a {w} plant at home?", "chosen": f"Water the {w} weekly, give it bright light "
             "and feed it in spring.", "rejected": "Plants are green.", "domain": "garden", "row": i}
            for i, w in enumerate(["fern", "cactus", "orchid", "basil", "ivy", "palm"])]
    rows += [{"prompt": "Ja?", "chosen": "Ja.", "rejected": "Nein.", "domain": "de", "row": 6}]
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["train", "--pairs", str(f), "--out", str(rm), "--epochs", "2"]) == 0
    assert main(["augment", "--pairs", str(f), "--rm", str(rm), "--budget", "14", "--out", str(tmp_path / "a.jsonl")]) == 0
    out = pd.DataFrame([json.loads(l) for l in open(tmp_path / "a.jsonl")])
    syn = out[out.origin == "synthetic"]
    assert len(syn) == 14 and "de" not in set(syn.domain)                    # the German pair's 2 went elsewhere
    src = out[out.origin == "original"].set_index("pair_id")
    assert (syn.domain.to_numpy() == src.loc[syn.source_pair_id, "domain"].to_numpy()).all()
    assert (syn.row.to_numpy() == src.loc[syn.source_pair_id, "row"].to_numpy()).all()
    assert "could not be made" not in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--budget", "-5"], "--budget must be >= 0"),
    (["--budget", "5", "--tau", "0"], "--tau must be > 0"),
])
def test_cli_rejects_bad_numbers(pairs_file, tmp_path, capsys, extra, message):
    assert main(["allocate", "--pairs", str(pairs_file), "--rm", str(tmp_path), "--out", str(tmp_path / "x.csv")] + extra) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_rm_and_bad_file(pairs_file, tmp_path, capsys):
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(tmp_path / "nope"), "--out", str(tmp_path / "s.csv")]) == 2
    assert re.search("no such folder", capsys.readouterr().err)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "same", "rejected": "same"}\n')
    assert main(["train", "--pairs", str(bad), "--out", str(tmp_path / "rm")]) == 2
    assert "bad.jsonl, row 1: chosen == rejected" in capsys.readouterr().err


def test_truncated_checkpoint_is_reported(pairs_file, tmp_path, capsys):
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "1"]) == 0
    data = (rm / "head.safetensors").read_bytes()
    (rm / "head.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]) == 2
    assert re.search("cannot load", capsys.readouterr().err)


HH_ROW = {"chosen": "\n\nHuman: How do I politely decline an invitation to a wedding?\n\nAssistant: Thank the couple warmly, "
                    "say you cannot attend, and send a kind note or a gift.",
          "rejected": "\n\nHuman: How do I politely decline an invitation to a wedding?\n\nAssistant: Just ignore it."}


def _hh_file(path, n=12):
    rows = [{k: v.replace("wedding", f"wedding number {i}") for k, v in HH_ROW.items()} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_augment_keeps_prompts_and_role_markers_and_has_a_uniform_mode(tmp_path, capsys):
    """Found on held-out HH data: the prompt was paraphrased and WordNet rewrote "Human:" / "Assistant:"."""
    hh = _hh_file(tmp_path / "hh.jsonl")
    rm = tmp_path / "rm"
    assert main(["train", "--hh", "--pairs", str(hh), "--out", str(rm), "--epochs", "1"]) == 0
    for extra in ([], ["--paraphrase-prompt"]):
        out = tmp_path / f"aug{len(extra)}.jsonl"
        assert main(["augment", "--hh", "--pairs", str(hh), "--rm", str(rm), "--budget", "36", "--version", "uniform",
                     "--out", str(out)] + extra) == 0
        rows = [json.loads(line) for line in open(out)]
        prompts = {r["prompt"] for r in rows[:12]}
        for r in rows[12:]:
            assert r["prompt"].count("Human:") == 1 and r["prompt"].rstrip().endswith("Assistant:")
            assert "Homo" not in r["prompt"] and "Adjunct" not in r["prompt"]
            if not extra:
                assert r["prompt"] in prompts                 # default: the prompt is never paraphrased
    err = capsys.readouterr().err
    assert "allocation (uniform): 36 synthetic pairs over 12 of 12 pairs" in err and "ESS/N 1.00" in err


def test_concentrated_allocation_warns_and_a_cap_spreads_it(pairs_file, tmp_path, capsys):
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "3"]) == 0
    capsys.readouterr()
    args = ["allocate", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "200", "--version", "v2", "--tau", "50"]
    assert main(args + ["--out", str(tmp_path / "a.csv")]) == 0
    assert "WARNING: the allocation is concentrated" in capsys.readouterr().err
    assert main(args + ["--max-per-source", "10", "--out", str(tmp_path / "b.csv")]) == 0
    b = pd.read_csv(tmp_path / "b.csv").budget
    assert b.sum() == 200 and b.max() <= 10
    assert main(args + ["--max-per-source", "2", "--out", str(tmp_path / "c.csv")]) == 2      # cannot hold B
    assert "raise --max-per-source or lower --budget" in capsys.readouterr().err


def test_cli_input_errors_name_the_fix(pairs_file, tmp_path, capsys):
    hh = _hh_file(tmp_path / "hh.jsonl")
    assert main(["train", "--pairs", str(hh), "--out", str(tmp_path / "rm")]) == 2            # HH file without --hh
    assert "add --hh" in capsys.readouterr().err
    assert main(["train", "--hh", "--pairs", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "rm")]) == 2
    assert "no such file" in capsys.readouterr().err                                          # no traceback
    assert main(["score", "--pairs", str(tmp_path / "missing.jsonl"), "--rm", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2                        # before any encoding
    assert re.search("no such folder", capsys.readouterr().err)
    assert main(["allocate", "--pairs", str(pairs_file), "--rm", str(tmp_path), "--budget", "5", "--version", "uniform",
                 "--tau", "1", "--out", str(tmp_path / "x.csv")]) == 2
    assert "no meaning with --version uniform" in capsys.readouterr().err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["augment", "--help"])
    out = capsys.readouterr().out
    assert "(default: v1)" in out and "(default: 5)" in out and "(default: 256)" in out


def test_console_script_is_installed():
    """`mars` (pyproject [project.scripts]) is the same command line as `python -m mars_lib`."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(sys.executable).parent / "mars"
    assert script.exists(), "no `mars` console script in this environment: reinstall the package (scripts/setup_env.sh)"
    out = subprocess.run([str(script), "allocate", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: mars allocate" in out.stdout and "(default: v1)" in out.stdout


@pytest.fixture(scope="module")
def hf_rm(tmp_path_factory):
    """A real Hugging Face reward-model folder: MiniLM with a fresh one-logit sequence-classification head,
    saved with save_pretrained as TRL's RewardTrainer saves its model."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mars_lib.pipeline.assets import minilm_dir
    out = tmp_path_factory.mktemp("hf") / "rm"
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=1).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def test_score_allocate_augment_with_a_hugging_face_reward_model(pairs_file, hf_rm, tmp_path, capsys):
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(hf_rm), "--out", str(tmp_path / "s.csv")]) == 0
    scored = pd.read_csv(tmp_path / "s.csv")
    assert len(scored) == sum(1 for _ in open(pairs_file)) and scored.reward_gap.std() > 0
    from mars_lib.reward_models.hf_folder import HFRewardModel
    rows = pd.read_json(pairs_file, lines=True)
    rm = HFRewardModel(hf_rm, max_length=256)
    assert rm.template == "concat"                                   # TRL's convention for a foreign folder
    assert np.allclose(scored.reward_chosen, rm.score(rows.prompt, rows.chosen), atol=1e-5)   # batching changes nothing
    assert main(["augment", "--pairs", str(pairs_file), "--rm", str(hf_rm), "--budget", "20", "--version", "v1",
                 "--out", str(tmp_path / "aug.jsonl")]) == 0
    assert sum(1 for _ in open(tmp_path / "aug.jsonl")) > len(rows)
    from datasets import load_from_disk                              # the same rows as a datasets dataset
    ds = load_from_disk(str(tmp_path / "aug_dataset"))
    assert ds.column_names == ["prompt", "chosen", "rejected", "pair_id", "origin", "source_pair_id"]
    assert ds.to_pandas().equals(pd.read_json(tmp_path / "aug.jsonl", lines=True, dtype=False))
    assert not list(tmp_path.glob(".*tmp*"))                          # no temp file or folder left behind


def test_bad_hugging_face_folders_stop_before_any_pair_is_read(pairs_file, hf_rm, tmp_path, capsys):
    import shutil
    missing_pairs = str(tmp_path / "never-read.jsonl")
    run = ["score", "--pairs", missing_pairs, "--out", str(tmp_path / "s.csv"), "--rm"]
    assert main(run + [str(hf_rm), "--max-length", "4096"]) == 2
    assert re.search("exceeds the model's 512 positions", capsys.readouterr().err)
    bin_only = tmp_path / "bin"
    shutil.copytree(hf_rm, bin_only)
    (bin_only / "model.safetensors").rename(bin_only / "pytorch_model.bin")
    assert main(run + [str(bin_only)]) == 2
    assert re.search("safetensors", capsys.readouterr().err)
    no_head = tmp_path / "nohead"
    shutil.copytree(hf_rm, no_head)
    cfg = json.loads((no_head / "config.json").read_text())
    cfg["architectures"] = ["BertModel"]
    (no_head / "config.json").write_text(json.dumps(cfg))
    assert main(run + [str(no_head)]) == 2
    assert re.search("no reward head", capsys.readouterr().err)
    from transformers import AutoTokenizer
    no_pad = tmp_path / "nopad"
    shutil.copytree(hf_rm, no_pad)
    tok = AutoTokenizer.from_pretrained(no_pad)
    tok.pad_token = None
    tok.save_pretrained(no_pad)
    assert AutoTokenizer.from_pretrained(no_pad).pad_token is None
    assert main(run + [str(no_pad)]) == 2
    assert re.search("no pad token.*tokenizer.pad_token = tokenizer.eos_token", capsys.readouterr().err)
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ('{"prompt": "x", "chosen": "a"}\n', "rejected"),
    ('{"prompt": "x", "chosen": "a", "rejected": \n', "row 1"),
])
def test_empty_or_malformed_pairs_file_stops_and_writes_nothing(hf_rm, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    for cmd in (["score"], ["allocate", "--budget", "4"], ["augment", "--budget", "4"]):
        out = tmp_path / f"{cmd[0]}.out"
        assert main(cmd + ["--pairs", str(bad), "--rm", str(hf_rm), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == [bad]                       # nothing written, not even a temp file


def test_target_ess_steers_the_allocation_and_uniform_lookalikes_are_flagged(pairs_file, tmp_path, capsys):
    """--target-ess picks τ so the budgets' ESS/N is the target; at the default τ this weak head's flat gaps
    give an allocation that is uniform in effect, and the command says so; --budget 0 says what it means."""
    from mars_lib.mars import concentration
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "3"]) == 0
    capsys.readouterr()
    base = ["allocate", "--pairs", str(pairs_file), "--rm", str(rm), "--budget", "400"]
    assert main(base + ["--out", str(tmp_path / "d.csv")]) == 0
    assert "cannot be told from uniform" in capsys.readouterr().err
    assert main(base + ["--target-ess", "0.5", "--out", str(tmp_path / "e.csv")]) == 0
    err = capsys.readouterr().err
    assert "--target-ess 0.5: τ =" in err and "cannot be told from uniform" not in err
    assert "concentrated" not in err and "not reached" not in err          # the concentration asked for, not warned about
    b = pd.read_csv(tmp_path / "e.csv").budget.to_numpy()
    assert b.sum() == 400 and abs(concentration(b)["ess_over_n"] - 0.5) < 0.05
    assert main(base + ["--target-ess", "0.5", "--tau", "1", "--out", str(tmp_path / "f.csv")]) == 2
    assert main(base + ["--target-ess", "0.5", "--version", "uniform", "--out", str(tmp_path / "f.csv")]) == 2
    capsys.readouterr()
    assert main(base[:-1] + ["0", "--out", str(tmp_path / "z.csv")]) == 0
    err = capsys.readouterr().err
    assert "--budget 0: no synthetic pairs" in err and "concentrated" not in err


def test_head_lengths_are_checked_before_encoding(pairs_file, tmp_path, capsys):
    """--max-length beyond MiniLM's 512 positions is refused at once (no traceback, exit 2); a head scored
    at another length than it was trained at is said so."""
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "1", "--max-length", "128"]) == 0
    capsys.readouterr()
    run = ["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]
    assert main(run + ["--max-length", "1024"]) == 2
    assert "exceeds the shipped encoder's 512 positions" in capsys.readouterr().err
    assert main(run) == 0
    assert "trained on texts cut at 128 tokens" in capsys.readouterr().err
    assert main(run + ["--max-length", "128"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_score_reports_the_length_baseline_and_warns_about_a_coin(capsys):
    """`mars score` gives accuracy, the longer-response baseline and RM − length with intervals over
    prompts; a coin-like RM and an RM that only tracks length are each warned about (api.MarsWarning,
    which the CLI prints as "WARNING: ...")."""
    import warnings

    from mars_lib.api import MarsWarning, not_a_coin
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"prompt": [f"q{i // 4}" for i in range(n)],
                       "chosen": ["x" * int(k) for k in rng.integers(20, 80, n)],
                       "rejected": ["y" * int(k) for k in rng.integers(5, 40, n)]})

    def run(rc, rr):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", MarsWarning)
            out = not_a_coin(df, rc, rr)
        return out, " ".join(str(x.message) for x in w if x.category is MarsWarning)
    coin, said = run(rng.normal(size=n), rng.normal(size=n))
    assert "cannot be told from a coin" in said and "does not beat the length baseline" in said
    assert coin["accuracy_lo"] < 0.5 < coin["accuracy_hi"] and "length baseline" in capsys.readouterr().err
    lengthy, said = run(df.chosen.str.len().to_numpy(float), df.rejected.str.len().to_numpy(float))
    assert "coin" not in said and "does not beat the length baseline" in said and lengthy["rm_minus_length"] == 0
    good, said = run(np.ones(n), np.zeros(n))
    assert said == "" and good["accuracy_lo"] == 1.0


def test_train_full_padding_free_writes_a_folder_score_reads(pairs_file, tmp_path, capsys):
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--regime", "full", "--padding-free",
                 "--max-length", "64", "--batch-size", "8"]) == 0
    assert json.loads((rm / "mars_finetune.json").read_text())["packing"] is True
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(rm), "--out", str(tmp_path / "s.csv")]) == 0
    assert pd.read_csv(tmp_path / "s.csv").reward_gap.notna().all()


def test_score_and_compare_count_the_texts_they_truncate(pairs_file, hf_rm, tmp_path, capsys):
    """Texts longer than --max-length are cut, never silently: score (head and Hugging Face RMs) and
    compare say how many, before any work; at a length that holds every text, nothing is said."""
    n = 2 * sum(1 for _ in open(pairs_file))
    rm = tmp_path / "rm"
    assert main(["train", "--pairs", str(pairs_file), "--out", str(rm), "--epochs", "1", "--max-length", "16"]) == 0
    assert re.search(rf"\d+ of {n} texts are longer than --max-length 16", capsys.readouterr().err)
    for folder in (rm, hf_rm):
        assert main(["score", "--pairs", str(pairs_file), "--rm", str(folder), "--max-length", "16",
                     "--out", str(tmp_path / "s.csv")]) == 0
        assert re.search(rf"\d+ of {n} texts are longer than --max-length 16", capsys.readouterr().err), folder
    assert main(["score", "--pairs", str(pairs_file), "--rm", str(hf_rm), "--max-length", "512",
                 "--out", str(tmp_path / "s.csv")]) == 0
    assert "longer than --max-length" not in capsys.readouterr().err
    lines = open(pairs_file).read().splitlines(keepends=True)
    (tmp_path / "tr.jsonl").write_text("".join(lines[::2]))
    (tmp_path / "te.jsonl").write_text("".join(lines[1::2]))
    assert main(["compare", "--train", str(tmp_path / "tr.jsonl"), "--test", str(tmp_path / "te.jsonl"),
                 "--max-length", "16", "--dry-run", "--out", str(tmp_path / "cmp")]) == 0
    assert re.search(rf"\d+ of {n} texts are longer than --max-length 16", capsys.readouterr().err)


def test_a_chosen_concentration_is_not_warned_about_but_a_missed_one_is():
    """--target-ess 0.3 is a concentration the user asked for: no 'concentrated' warning (the same ESS/N
    reached through --tau is warned about); a target the integer budgets cannot reach is said."""
    import warnings

    from mars_lib import api
    from mars_lib.mars import concentration
    gaps = np.random.default_rng(0).normal(0, 1, 400)

    def run(budget=800, **kw):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            _, b = api.budgets(gaps, budget, verbose=False, **kw)
        return b, " ".join(str(x.message) for x in w)
    b, said = run(target_ess=0.3)
    assert abs(concentration(b)["ess_over_n"] - 0.3) < 0.05 and "concentrated" not in said and "not reached" not in said
    t = api.budgets.__globals__["tau_for_ess"](gaps, 0.3, api.strategies.allocators()["v1"].q, budget=800, seed=0)
    assert "concentrated" in run(tau=t)[1]
    assert "not reached" in run(budget=40, target_ess=0.5)[1]        # 40 pairs over 400: ESS/N at most 0.1
