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
