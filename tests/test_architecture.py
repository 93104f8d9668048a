"""The house rules a reader can rely on: modules of one job under 400 lines, no import cycle between
the library's modules (counting imports inside functions too; imports under `if TYPE_CHECKING:` are
for annotations and make no runtime edge), no branching on reward-model kinds."""
import ast
import re

from mars_lib.config import REPO_ROOT

LIB = REPO_ROOT / "mars_lib"
MODULES = {p.stem: p for p in LIB.glob("*.py")}


def _imports(path) -> set[str]:
    """mars_lib modules a file imports, anywhere in it (`from .x import`, `from . import x`, `mars_lib.x`)."""
    out = set()
    tree = ast.parse(path.read_text())
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}       # annotations only: no runtime edge
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod:
                out.add(mod.split(".")[0])
            elif node.level == 1:
                out |= {a.name for a in node.names}
            elif mod.startswith("mars_lib."):
                out.add(mod.split(".")[1])
            elif mod == "mars_lib":
                out |= {a.name for a in node.names}
    return {m for m in out if m in MODULES}


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
HEAVY = {"reward_model", "finetune", "generation"}


def test_package_imports_sit_at_the_top_but_the_heavy_ones():
    inside = []
    for name, p in MODULES.items():
        for f in ast.walk(ast.parse(p.read_text())):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(f):
                    if isinstance(n, ast.ImportFrom) and n.level == 1:
                        targets = [n.module] if n.module else [a.name for a in n.names]
                        inside += [f"{name}:{n.lineno} imports {t}" for t in targets if t not in HEAVY]
    assert not inside, inside


def test_no_function_over_80_lines():
    long = [f"{name}.{f.name}: {f.end_lineno - f.lineno + 1}" for name, p in MODULES.items()
            for f in ast.walk(ast.parse(p.read_text())) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and f.end_lineno - f.lineno + 1 > 80]
    assert not long, long


def test_no_dead_function():
    """Every top-level function and class of the library is used by the library, a notebook, a bench
    script or the documentation (a function only the tests call is dead code)."""
    users = [*LIB.glob("*.py"), *(REPO_ROOT / "notebooks").glob("*.ipynb"), *(REPO_ROOT / "bench").glob("*.py"),
             *(REPO_ROOT / "docs").glob("*.md"), REPO_ROOT / "README.md", REPO_ROOT / "pyproject.toml"]
    text = "\n".join(p.read_text() for p in users)
    dead = []
    for name, p in MODULES.items():
        for n in ast.parse(p.read_text()).body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("__") and not n.decorator_list:
                if len(re.findall(rf"\b{re.escape(n.name)}\b", text)) < 2:
                    dead.append(f"{name}.{n.name}")
    assert not dead, dead
