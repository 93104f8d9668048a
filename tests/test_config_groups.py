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


def test_an_installed_copy_resolves_relative_paths_against_the_working_directory(tmp_path):
    """Outside a checkout (no pyproject.toml beside mars_lib/, as in site-packages) relative results paths
    resolve against the working directory, never inside the installation; in the checkout, its root."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import mars_lib
    from mars_lib.pipeline.io import REPO_ROOT
    assert (REPO_ROOT / "pyproject.toml").is_file()
    site, work = tmp_path / "site-packages", tmp_path / "work"
    shutil.copytree(Path(mars_lib.__file__).parent, site / "mars_lib", ignore=shutil.ignore_patterns("__pycache__"))
    work.mkdir()
    code = ("from mars_lib.pipeline.config import RunConfig; from mars_lib.pipeline.io import REPO_ROOT; "
            "print(REPO_ROOT); print(RunConfig.resolve('smoke').path('x.csv'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    root, results = r.stdout.split()
    assert Path(root) == work and Path(results).is_relative_to(work) and not Path(results).is_relative_to(site)
