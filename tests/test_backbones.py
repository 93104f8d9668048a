"""The stronger-backbone head regime (mars_lib.pipeline.backbones, rm_training.backbones): the same arms,
seeds and pool texts with a second frozen encoder, its table against the length baseline, and its rows
in the claims table."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mars_lib.data.tracks import load_track
from mars_lib import figures
from mars_lib.evaluation import claims, findings, stats
from mars_lib.pipeline import backbones, context, rm_training
from mars_lib.pipeline.arms import train_strategies
from mars_lib.pipeline.assets import minilm_dir
from mars_lib.pipeline.config import ConfigError, RunConfig
from mars_lib.reward_models.features import featurize
from mars_lib.synthetic import pools
from mars_lib.pipeline.tables import load_table, save_table

ARMS = ("none_matched", "uniform_stratified", "mars_v1")


def test_the_length_arm_scores_longer_chosen_one_ties_half():
    test = pd.DataFrame({"pair_id": [3, 4, 5], "chosen": ["aaa", "a", "bb"], "rejected": ["a", "aaa", "cc"]})
    pp = pd.DataFrame({"track": "t", "rm": "head", "strategy": "x", "seed": [0, 0, 0, 1, 1, 1],
                       "pair_id": [3, 4, 5] * 2, "cluster": [0, 1, 2] * 2, "correct": 1.0})
    out = backbones.length_outcomes(pp, test)
    assert (out.strategy == backbones.LENGTH).all() and len(out) == 6
    assert out.set_index(["seed", "pair_id"]).correct.loc[1].tolist() == [1.0, 0.0, 0.5]


def test_head_backbones_need_the_head_regime():
    with pytest.raises(ConfigError, match="head_backbones needs rm='head'"):
        RunConfig.resolve("smoke", rm="full", head_backbones=("mpnet",))


def hh_pairs(split: str = "test", n: int = 12) -> pd.DataFrame:
    df = load_track("hh-rlhf", "all")
    return df[df.split == split].head(n).reset_index(drop=True)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """rm_training.backbones on 16 HH-RLHF train / 12 test pairs, two seeds, one round, with the MiniLM
    folder named as a second encoder (another cache id: its features are computed again, as mpnet's would be)."""
    other = str(minilm_dir())
    cfg = RunConfig.resolve("smoke", results_dir=str(tmp_path_factory.mktemp("bb")), strategies=ARMS, seeds=(0, 1),
                            rounds=1, n_paraphrases=2, human_track=("hh-rlhf",), head_backbones=(other,), n_boot=200)
    ctx = context.setup(cfg)
    base, test = featurize(hh_pairs("train", 16), ctx.encoder), featurize(hh_pairs(), ctx.encoder)
    pool = pools.synthetic_pool(cfg, base, ctx.encoder)
    runs = train_strategies(cfg, base, pool, {"test": test}, ctx.encoder)
    hum = rm_training.HumanTracks({"hh-rlhf": runs}, {"hh-rlhf": pool}, {},
                                  claims.per_pair_outcomes(runs, test, "hh-rlhf", cfg.rm))
    s = SimpleNamespace(cfg=cfg, tracks={"hh-rlhf": (base, {"test": test})})
    return cfg, hum, rm_training.backbones(s, hum), other


def test_the_second_backbone_trains_every_arm_on_the_same_pairs(stage):
    cfg, hum, table, other = stage
    pp = load_table(cfg.path("03_rm_training", "per_pair_backbones.parquet"))
    assert set(pp.rm) == {f"head:{other}"} and set(pp.strategy) == set(ARMS) and set(pp.seed) == {0, 1}
    assert set(pp.pair_id) == set(hum.per_pair.pair_id)
    assert set(zip(table.rm, table.strategy)) == {(rm, a) for rm in ("head", f"head:{other}") for a in ARMS}
    assert table.length_baseline.nunique() == 1                       # one baseline: the same test pairs
    hist = load_table(cfg.path("03_rm_training", "history_backbones.csv"))
    assert set(hist.rm) == {f"head:{other}"} and (hist.track == "hh-rlhf").all()


def test_the_table_matches_the_package_statistics(stage):
    cfg, hum, table, other = stage
    row = table.set_index(["rm", "strategy"]).loc[("head", "mars_v1")]
    v = hum.per_pair[hum.per_pair.strategy == "mars_v1"].rename(columns={"correct": "value"})
    assert row.accuracy == pytest.approx(v.value.mean())
    assert row.accuracy - row.length_baseline == pytest.approx(row.minus_length)
    both = pd.concat([v, backbones.length_outcomes(v, hh_pairs()).rename(columns={"correct": "value"})])
    d = stats.paired_difference(both, "mars_v1", backbones.LENGTH, n_boot=cfg.n_boot)
    assert (row.minus_length_lo, row.minus_length_hi) == pytest.approx((d["lo"], d["hi"]))
    assert 0 < row.ess_over_n <= 1 and row.gap_sd > 0


def write_claims(cfg, hum) -> pd.DataFrame:
    """The claims need notebook 03's own tables: the MiniLM rows saved where the human-track stage saves them."""
    save_table(hum.per_pair, cfg.path("03_rm_training", "per_pair_human_track.parquet"), cfg)
    own = pd.concat([r.history.assign(track="hh-rlhf") for r in hum.runs["hh-rlhf"].values()], ignore_index=True)
    save_table(own, cfg.path("03_rm_training", "history_human_track.csv"), cfg)
    return claims.write_claims(cfg)


def test_the_claims_table_reads_the_second_backbone(stage):
    cfg, hum, table, other = stage
    out = write_claims(cfg, hum)
    assert {"head", f"head:{other}"} <= set(out.rm)


def test_notebook_03_findings_report_every_backbone(stage):
    cfg, hum, table, other = stage
    write_claims(cfg, hum)
    lines = findings.findings("03_rm_training", cfg.path("x").parent)
    text = next(x for x in lines if "Stronger frozen backbone on hh-rlhf" in x)
    r = table.set_index(["rm", "strategy"]).loc[(f"head:{other}", table.strategy.iloc[0])]
    assert f"accuracy {r.accuracy:.3f}" in text and f"gap sd {r.gap_sd:.3f}" in text
    assert any(f"head:{other} mars_v1" in x for x in lines if x.startswith("- MARS − uniform_stratified"))


def test_the_backbone_figure_draws_every_backbone_and_the_length_line(stage):
    cfg, hum, table, other = stage
    fig = figures.draw("03_backbones", cfg)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "longer response wins" in labels and sum(x.startswith("head") for x in labels) == 2
    assert len(ax.get_xticklabels()) == len(ARMS)
    assert cfg.path("figures", "03_backbones.png").exists()


@pytest.mark.slow                  # loads (from an empty cache: extracts) the 110M-parameter mpnet
def test_mpnet_is_an_offline_encoder_with_its_own_cache_id():
    cfg = RunConfig.resolve("smoke")
    enc = context.encoder_for(cfg.replace(encoder="mpnet"))
    e = enc.embed(["Human: hi\n\nAssistant: hello", "Human: hi\n\nAssistant: go away"], progress=False)
    assert e.shape == (2, 768) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert enc.encoder_id.startswith("all-mpnet-base-v2@") and enc.encoder_id != context.encoder_for(cfg).encoder_id
