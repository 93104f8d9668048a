"""Parameter cells show the cpu reference run's literal values, and `RunConfig.from_notebook` turns
them (plus papermill's overrides) into the run's one config object."""
import ast
import json

import numpy as np
import pytest

from mars_lib.pipeline.config import REPO_ROOT, ConfigError, RunConfig

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def _parameters(nb_path) -> dict:
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameter_cells_show_the_cpu_reference_values(nb_path):
    params = _parameters(nb_path)
    ref = RunConfig.resolve("cpu").to_dict()
    assert params.pop("profile") == "cpu" and params.pop("overrides", []) == [] and len(params) >= 10
    for name, value in params.items():
        assert name in ref, f"{nb_path.name}: {name} is not a config field"
        assert (tuple(value) if isinstance(value, list) else value) == ref[name], f"{nb_path.name}: {name}"
    assert RunConfig.from_notebook({"profile": "cpu", **params}) == RunConfig.resolve("cpu")


def test_from_notebook_takes_the_profile_and_only_changed_values():
    params = _parameters(REPO_ROOT / "notebooks" / "03_rm_training.ipynb")
    smoke = RunConfig.from_notebook({**params, "profile": "smoke"})
    assert smoke == RunConfig.resolve("smoke")                    # values equal to the cpu ones: the profile's
    changed = RunConfig.from_notebook({**params, "profile": "smoke", "tau_v1": 0.3, "seeds": [0, 1, 2]})
    assert changed == RunConfig.resolve("smoke", tau_v1=0.3, seeds=[0, 1, 2])
    assert changed.seeds == (0, 1, 2) and changed.n_prompts == RunConfig.resolve("smoke").n_prompts
    v1 = RunConfig.from_notebook({**params, "preset": "v1"})
    assert v1 == RunConfig.resolve("cpu", preset="v1")
    ignored = RunConfig.from_notebook({**params, "OUT": "x", "np": 1})       # names that are no config field
    assert ignored == RunConfig.resolve("cpu")


def test_papermill_injected_values_override_even_when_equal_to_the_cpu_reference():
    """`-p profile paper -p device cpu`: the runner names device in `overrides`, so the cpu value is kept
    although it equals the reference; precision, not named, is the paper profile's."""
    params = _parameters(REPO_ROOT / "notebooks" / "03_rm_training.ipynb")
    cfg = RunConfig.from_notebook({**params, "profile": "paper", "device": "cpu", "precision": "fp32",
                                   "offline": True, "overrides": ["device", "precision", "offline"]})
    paper = RunConfig.resolve("paper")
    assert (cfg.device, cfg.precision, cfg.offline) == ("cpu", "fp32", True)
    assert cfg.rm == paper.rm != params["rm"]                          # not named: the paper profile's value
    plain = RunConfig.from_notebook({**params, "profile": "paper"})
    assert plain.device == paper.device != params["device"]            # nothing named: the profile's value
    with pytest.raises(ConfigError, match="no config fields"):
        RunConfig.from_notebook({**params, "overrides": ["no_such_field"]})


def test_from_notebook_refuses_a_module_shadowing_a_field():
    with pytest.raises(ConfigError, match="rewardbench.*shadows"):
        RunConfig.from_notebook({"profile": "cpu", "rewardbench": np})
    with pytest.raises(ConfigError, match="tau_v1"):
        RunConfig.from_notebook({"profile": "cpu", "tau_v1": -1.0})        # still validated


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_line(nb_path):
    """papermill parses the parameters cell itself (`--help-notebook`, type inference); a line it cannot
    parse (e.g. an "=" inside the comment) prints "Unable to parse line" in every run's log."""
    import nbformat
    from papermill.translators import PythonTranslator
    nb = nbformat.read(str(nb_path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert {p.name for p in PythonTranslator.inspect(cell)} == set(_parameters(nb_path))
