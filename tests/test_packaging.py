"""environment.yml and pyproject.toml pin the same versions; torch is pinned."""
import re
import tomllib

from conftest import REPO


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*-?\s*\"?([A-Za-z0-9_.\-]+)==([^\s\",]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_environment_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = py["project"]["optional-dependencies"]
    deps = py["project"]["dependencies"] + extras["test"] + extras["paper"]
    want = _pins(deps)
    got = _pins((REPO / "environment.yml").read_text().splitlines())
    assert want, "no pins parsed from pyproject"
    assert got == want


def test_torch_pinned_everywhere():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "torch==2.13.0" in py["project"]["dependencies"]
    assert "torch==2.13.0" in (REPO / "scripts" / "setup_env.sh").read_text()


def test_readme_starts_a_newcomer():
    """The two commands within the first 40 lines, and a README short enough to read (reference in docs/)."""
    readme = (REPO / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:40])
    assert "./run_all.sh" in head and "./run_tests.sh" in head
    assert len(readme.encode()) <= 15 * 1024, len(readme.encode())


def test_ci_calls_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "./run_tests.sh" in readme and "./run_tests.sh" in ci


def test_notebooks_committed_without_outputs_and_with_parameters():
    import json
    nbs = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert [p.name[:2] for p in nbs] == ["01", "02", "03", "04", "05"]
    for p in nbs:
        nb = json.loads(p.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in code), p.name
        tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{p.name}: needs exactly one 'parameters' cell"
        assert nb["metadata"]["kernelspec"]["language"] == "python"
        src = "\n".join("".join(c["source"]) for c in code)
        assert "import mars_lib" in src or "from mars_lib" in src
        assert not re.search(r"^\s*def |^\s*class ", src, re.M), f"{p.name} defines a function/class"
