"""RunConfig groups its settings by concern and still reads, builds, replaces and saves them flat."""
import dataclasses

import pytest

from mars_lib.pipeline.config import FIELD_GROUP, GROUPS, ConfigError, RunConfig


def test_every_setting_lives_in_exactly_one_group_and_reads_flat():
    cfg = RunConfig.resolve("cpu")
    flat = cfg.to_dict()
    grouped = cfg.grouped()
    assert set(grouped) == {"run", *GROUPS}
    names = [n for g in grouped.values() for n in g]
    assert len(names) == len(set(names)) == len(flat)        # no setting twice, none lost
    for name, group in FIELD_GROUP.items():
        assert getattr(cfg, name) == getattr(getattr(cfg, group), name) == flat[name]
    assert cfg.mars.tau_v1 == 0.1 and cfg.task.task_dir == "data/gold_task_v3" and cfg.reward_model.rm == "head"


def test_flat_construction_replace_and_round_trip():
    cfg = RunConfig.resolve("smoke", tau_v1=0.3)
    assert cfg.mars.tau_v1 == 0.3 and cfg.mars.rounds == 2                     # smoke profile's rounds
    assert RunConfig(**cfg.to_dict()) == cfg                                    # what config.json holds rebuilds the run
    again = dataclasses.replace(cfg, rounds=4, seeds=(7,))                      # the stdlib path used by callers
    assert (again.rounds, again.seeds, again.tau_v1) == (4, (7,), 0.3)
    assert cfg.replace(operator="resample").augment.operator == "resample"
    assert hash(cfg) == hash(RunConfig(**cfg.to_dict()))


def test_grouped_fields_are_validated_and_unknown_names_rejected():
    with pytest.raises(ConfigError, match="tau_v1"):
        RunConfig.resolve("cpu").replace(tau_v1=-1.0)
    with pytest.raises(ConfigError, match="unknown"):
        RunConfig(tau=0.1)
    with pytest.raises(AttributeError):
        RunConfig().no_such_field
