"""The house rules a reader can rely on: modules of one job under 400 lines, grouped in a few
packages by concern, each with a docstring that names its modules; no import cycle between the
library's modules (counting imports inside functions too; imports under `if TYPE_CHECKING:` are for
annotations and make no runtime edge), no branching on reward-model kinds."""
import ast
import re
from collections import Counter

from mars_lib.pipeline.io import REPO_ROOT

LIB = REPO_ROOT / "mars_lib"
# every library module by its dotted name under mars_lib ("mars", "data.pairs", "figures.registry", ...)
MODULES = {".".join(p.relative_to(LIB).with_suffix("").parts): p for p in LIB.rglob("*.py")
           if "evaluate_metrics" not in p.parts and p.name != "__init__.py"}
PACKAGES = sorted({p.parent.name for p in LIB.glob("*/__init__.py")} - {"__pycache__"})


def _resolve(name: str) -> str | None:
    """The library module a dotted name under mars_lib refers to (a module, or a name inside one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(node: ast.ImportFrom) -> set[str]:
    mod = node.module or ""
    if not (mod == "mars_lib" or mod.startswith("mars_lib.")):
        return set()
    base = mod.removeprefix("mars_lib").lstrip(".")
    return {m for a in node.names if (m := _resolve(f"{base}.{a.name}".lstrip(".")))}


def _imports(path) -> set[str]:
    """Library modules a file imports, anywhere in it (`from mars_lib.x import`, `from mars_lib.pkg import x`)."""
    out = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}       # annotations only: no runtime edge
    for node in ast.walk(tree):
        if id(node) not in type_only and isinstance(node, ast.ImportFrom):
            out |= _targets(node)
    return out


def test_library_is_a_few_packages_by_concern_each_saying_what_it_holds():
    top = sorted(p.stem for p in LIB.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert top == ["api", "baselines", "cli", "mars", "strategies"], top   # the method, its API and CLI; the rest by concern
    assert len(PACKAGES) <= 8, PACKAGES
    for pkg in PACKAGES:
        doc = ast.get_docstring(ast.parse((LIB / pkg / "__init__.py").read_text())) or ""
        mods = sorted(p.stem for p in (LIB / pkg).glob("*.py") if p.stem != "__init__")
        unnamed = [m for m in mods if not re.search(rf"\b{m}\b", doc)]
        assert not unnamed, f"mars_lib/{pkg}/__init__.py does not say what {unnamed} hold"


def test_no_relative_imports():
    """Imports name their module in full (`from mars_lib.evaluation import stats`): a reader sees where it lives."""
    rel = [f"{name}:{n.lineno}" for name, p in MODULES.items() for n in ast.walk(ast.parse(p.read_text()))
           if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert not rel, rel


def test_no_module_over_400_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_import_cycle_between_library_modules():
    graph = {name: _imports(p) - {name} for name, p in MODULES.items()}
    graph.pop("__init__", None)
    for g in graph.values():
        g.discard("__init__")
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = "open"
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"
    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, cycles


def test_nothing_branches_on_the_reward_model_kind():
    kinds = re.compile(r"isinstance\([^)]*(HeadRewardModel|FinetunedRewardModel)")
    hits = [f"{p.name}:{i}" for p in MODULES.values() for i, line in enumerate(p.read_text().splitlines(), 1)
            if kinds.search(line)]
    assert not hits, hits


# The modules whose import loads torch or transformers: the only package modules another module may import
# inside a function (so that config, the figures and the claims stay importable without them).
HEAVY = {"reward_models.head", "reward_models.finetune", "synthetic.generation"}


def test_package_imports_sit_at_the_top_but_the_heavy_ones():
    inside = []
    for name, p in MODULES.items():
        for f in ast.walk(ast.parse(p.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(f):
                    if isinstance(n, ast.ImportFrom):
                        inside += [f"{name}:{n.lineno} imports {t}" for t in _targets(n) if t not in HEAVY]
    assert not inside, inside


def test_no_function_over_80_lines():
    long = [f"{name}.{f.name}: {f.end_lineno - f.lineno + 1}" for name, p in MODULES.items()
            for f in ast.walk(ast.parse(p.read_text())) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and f.end_lineno - f.lineno + 1 > 80]
    assert not long, long


def test_no_dead_function():
    """Every top-level function and class of the library is used by the library, a notebook, a bench
    script or the documentation (a function only the tests call is dead code)."""
    users = [*LIB.rglob("*.py"), *(REPO_ROOT / "notebooks").glob("*.ipynb"), *(REPO_ROOT / "bench").glob("*.py"),
             *(REPO_ROOT / "docs").glob("*.md"), REPO_ROOT / "README.md", REPO_ROOT / "pyproject.toml"]
    # how often each identifier occurs as a whole word (what `\bname\b` counts), in one pass over the text
    words = Counter(re.findall(r"\w+", "\n".join(p.read_text() for p in users)))
    dead = []
    for name, p in MODULES.items():
        for n in ast.parse(p.read_text()).body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("__") and not n.decorator_list:
                if words[n.name] < 2:
                    dead.append(f"{name}.{n.name}")
    assert not dead, dead
