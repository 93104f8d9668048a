"""Semantic refinement (MARS v2): the acceptance rule, the quality filters, caching, and the tiny
stand-in generator saved with save_pretrained (the paper profile's plug-in path)."""
import numpy as np
import pandas as pd
import pytest

from mars_lib.synthetic.generation import GenStats
from mars_lib.synthetic.refine import RefineConfig, refinement_summary, semantic_refine, trim_unfinished


class FakeEncoder:
    """Unit vectors at an angle given by the text: '@<degrees> ...' (anything else: 0 degrees)."""
    encoder_id = "fake"

    def embed(self, texts, desc="", progress=True):
        ang = [np.deg2rad(float(t.split()[0][1:])) if t.startswith("@") else 0.0 for t in texts]
        return np.array([[np.cos(a), np.sin(a)] for a in ang], dtype=np.float32).reshape(len(texts), 2)


class ScriptedGenerator:
    """Returns scripted rewrites: script[(pair tag, side, attempt)] -> (text, finished)."""
    model_id = "scripted"

    def __init__(self, script):
        self.script, self.stats, self.seen = script, GenStats(), []

    def generate_with_info(self, requests, desc=""):
        out = []
        for r in requests:
            tag = r.prompt.split("Question: ")[1].split("\n")[0]
            side = "rejected" if "Rewrite answer B" in r.prompt else "chosen"
            self.seen.append((tag, side, r.sample))
            out.append(self.script.get((tag, side, r.sample), ("@0 same as chosen", True)))
        return out


def _pairs():
    # chosen at 0°, rejected at 10° / 20° / 30° (low distance) and 120° (high): mean d sets the threshold
    return pd.DataFrame({"pair_id": ["a", "b", "c", "d"], "prompt": ["qa", "qb", "qc", "qd"],
                         "chosen": ["@0 the chosen answer"] * 4, "rejected": ["@10 r", "@20 r", "@30 r", "@120 r"]})


def test_acceptance_keeps_only_distance_increasing_rewrites():
    script = {("qa", "rejected", 0): ("@5 closer rewrite.", True),          # distance shrinks: refused
              ("qa", "rejected", 1): ("@60 farther rewrite.", True),        # grows: kept at attempt 2
              ("qc", "chosen", 0): ("@-40 new chosen.", True)}              # rejected never works; chosen does
    for k in range(3):
        script[("qc", "rejected", k)] = ("@29 almost the same.", True)
        script[("qb", "rejected", k)] = ("@15 closer.", True)
        script[("qb", "chosen", k)] = ("@18 closer too.", True)
    gen = ScriptedGenerator(script)
    ref = semantic_refine(_pairs(), FakeEncoder(), gen, RefineConfig(attempts=3)).set_index("pair_id")
    assert ref.attrs["threshold"] == pytest.approx(np.mean(1 - np.cos(np.deg2rad([10, 20, 30, 120]))), abs=1e-6)
    assert list(ref.low_distance) == [True, True, True, False]
    assert ref.loc["a", "rewrite_type_kept"] == "rejected" and ref.loc["a", "rejected"] == "@60 farther rewrite."
    assert ref.loc["a", "attempts_rejected"] == 2 and ref.loc["a", "attempts_chosen"] == 0
    assert ref.loc["b", "rewrite_type_kept"] == "none" and ref.loc["b", "rejected"] == "@20 r"
    assert ref.loc["b", "chosen"] == "@0 the chosen answer" and ref.loc["b", "distance_gain"] == 0
    assert ref.loc["c", "rewrite_type_kept"] == "chosen" and ref.loc["c", "chosen"] == "@-40 new chosen."
    assert ref.loc["c", "rejected"] == "@30 r" and ref.loc["c", "attempts_rejected"] == 3
    assert not ref.loc["d", "refinement_attempted"] and ref.loc["d", "rejected"] == "@120 r"
    assert not any(tag == "qd" for tag, _, _ in gen.seen)                  # high distance: never rewritten
    assert (ref.distance_final[ref.refinement_kept] > ref.distance_original[ref.refinement_kept]).all()
    assert (ref.chosen_original == _pairs().chosen.to_numpy()).all()
    s = refinement_summary(ref)
    assert s.loc[0, "attempted"] == 3 and s.loc[0, "kept"] == 2 and s.loc[0, "failed"] == 1


def test_filters_catch_empty_looping_copies_and_cut_unfinished_output():
    loop = "@80 " + "the cat sat on the mat " * 10
    script = {("qa", "rejected", 0): ("", True), ("qa", "rejected", 1): (loop, True),
              ("qa", "rejected", 2): ("@0 the chosen answer", True),                                    # verbatim copy of chosen
              ("qb", "rejected", 0): ("@70 A full sentence here. And a cut-off tai", False)}
    gen = ScriptedGenerator(script)
    ref = semantic_refine(_pairs(), FakeEncoder(), gen, RefineConfig(attempts=3)).set_index("pair_id")
    f = ref.attrs["filtered"]
    assert f["empty"] >= 1 and f["looping"] >= 1 and f["verbatim_copy"] >= 1 and f["trimmed"] == 1
    assert ref.loc["a", "rewrite_type_kept"] != "rejected"                   # none of its three survived
    assert ref.loc["b", "rejected"] == "@70 A full sentence here."


def test_trim_unfinished():
    assert trim_unfinished("One. Two! Three is cut") == "One. Two!"
    assert trim_unfinished('He said "yes." Then') == 'He said "yes."'
    assert trim_unfinished("no sentence end at all") == ""


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="missing columns"):
        semantic_refine(pd.DataFrame({"prompt": ["x"]}), FakeEncoder(), ScriptedGenerator({}))
    with pytest.raises(ValueError, match="no pairs"):
        semantic_refine(_pairs().iloc[:0], FakeEncoder(), ScriptedGenerator({}))
    with pytest.raises(ValueError, match="threshold"):
        RefineConfig(threshold=3.0)


def test_real_generator_cache_hits_on_rerun(tmp_path):
    """A tiny random Llama saved with save_pretrained, loaded by Generator.from_pretrained (the plug-in
    path of any hub rewriter): the second refinement generates nothing."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mars_lib.pipeline.assets import smollm2_dir
    from mars_lib.synthetic.generation import GenerationCache, Generator
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = RefineConfig(attempts=2, max_new_tokens=8)
    runs = []
    for _ in range(2):
        gen = Generator.from_pretrained(str(tmp_path / "tiny"), GenerationCache(tmp_path / "gen.sqlite"), batch_size=4)
        runs.append((semantic_refine(_pairs(), FakeEncoder(), gen, cfg), gen))
    (first, g1), (second, g2) = runs
    assert g1.calls > 0 and g2.calls == 0 and g2.stats.cache_hits == g1.stats.requested
    pd.testing.assert_frame_equal(first, second)
