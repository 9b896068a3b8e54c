"""The house has no circles: no module of the project imports, directly or through others, a module that imports
it back. Every import statement counts (lazy ones inside functions too), except those under TYPE_CHECKING, and
importing ``a.b.c`` counts as importing the package ``a.b`` too (Python runs its ``__init__`` first). The house
has floors (docs/architecture.md): a module imports its own floor and those below, never one above. And no
function is longer than a screen."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestration", "mcp_mageagent")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # "from . import hybrid" needs the submodule; "from . import PATTERNS" needs the package itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t in modules and t != mod:
                    graph[mod].add(t)
                    graph[mod] |= {p for p in _parents(t) if p in modules and not _within(mod, p)}
    return graph


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


# The floors, lowest first (docs/architecture.md draws them). A module may import modules of its own floor and
# of the floors below it, never of one above.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("orchestration.core",),  # errors, settings, types, the custom-pattern spec
    ("orchestration.models",),  # the backend seam, weights and conversion, the pool, the MLX owner thread
    ("orchestration.run",),  # the run context, prompts, heuristics: what patterns and tool calls share
    ("orchestration.tools",),  # tool calls: catalogue, schema checks, extraction, grounding, risk
    ("orchestration.checks",),  # the sandbox, the test harness, the checks taken from a request
    ("orchestration.patterns",),  # one module per pattern, the pattern table, the engine
    ("orchestration.bench", "orchestration.evaluation"),  # measurements over the engine
    ("orchestration.faces", "mcp_mageagent"),  # the CLI, the HTTP API, the MCP server, and what they share
)
# Imports allowed up a floor, by name: none. The bench measures the MCP face from its own process
# (python -m mcp_mageagent.bench), as it measures the HTTP face through `mageagent serve`.
UPWARD: set[tuple[str, str]] = set()


def _floor(module: str) -> int:
    for level, packages in enumerate(FLOORS):
        if any(_within(module, p) for p in packages):
            return level
    raise AssertionError(f"{module} is on no floor: put it in one of the packages of FLOORS")


def test_every_module_is_on_a_floor() -> None:
    for module in _graph():
        _floor(module)  # no module lies loose beside the packages


def test_no_module_imports_a_floor_above_its_own() -> None:
    graph = _graph()
    up = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                if _floor(t) > _floor(m) and (m, t) not in UPWARD)
    assert not up, "imports up a floor:\n" + "\n".join(up)


def test_the_engine_imports_no_mcp() -> None:
    """orchestration/ is the engine: no module there imports the MCP SDK (``mcp``, ``mcp_types``) or the MCP face
    (``mcp_mageagent``), lazily or not, TYPE_CHECKING included."""
    found = []
    for path in sorted((ROOT / "orchestration").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0].startswith("mcp") for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not found, "the engine imports MCP:\n" + "\n".join(found)


MAX_FUNCTION_LINES = 80  # a reader should not scroll through one function


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these where a reader would scroll:\n" + "\n".join(long)
