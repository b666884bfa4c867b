"""The import graph points one way: cli -> pipelines -> components -> the servesweep library, and inside the
library there are no circles and the spec and the lake sit at the bottom. Read from the source (ast), so a
lazy import inside a function counts as much as one at the top.

docs/architecture.md draws this graph; the rules below are its legend.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.support.paths import REPO

ROOT = REPO
FIRST_PARTY = ("servesweep", "components", "pipelines")
# Layers, top first: a module may import its own layer (components: not even that) or any layer below.
LAYERS = ("cli", "pipelines", "components", "library")
# The bottom of the library: what these import may not reach back up to the packages built on them.
FOUNDATIONS = ("servesweep.spec", "servesweep.gke_spec", "servesweep.lake")
ABOVE_FOUNDATIONS = ("servesweep.analysis", "servesweep.planner", "servesweep.k8s", "servesweep.platform",
                     "servesweep.loadgen", "servesweep.metrics", "servesweep.catalog", "servesweep.sweep_plan")
# The one place a platform is named: steps call servesweep.platform's chooser, never a platform module.
PLATFORM_MODULES = ("servesweep.platform.local", "servesweep.platform.gke", "servesweep.k8s")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in FIRST_PARTY for p in sorted((ROOT / top).rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """First-party modules `name` imports, anywhere in the file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in FIRST_PARTY}


MODULES = _modules()
GRAPH = {name: {m for m in _imports(name, path) if m in MODULES} for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if module == "servesweep.cli":
        return "cli"
    return {"pipelines": "pipelines", "components": "components"}.get(module.split(".")[0], "library")


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _unit(module: str) -> str:
    """The library package (or top-level module) a module belongs to: servesweep.lake.store -> servesweep.lake."""
    return ".".join(module.split(".")[:2])


def test_the_graph_is_read():
    assert {"servesweep.cli", "pipelines.kfp_pipeline", "components.sweep", "servesweep.platform.base"} <= set(GRAPH)
    assert "servesweep.sweep_plan" in GRAPH["components.sweep"]
    assert "servesweep.platform.types" in GRAPH["servesweep.platform.gke.cluster"]


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
              if LAYERS.index(_layer(b)) < LAYERS.index(_layer(a))]
    assert upward == []


def test_no_component_imports_another_component():
    across = [f"{a} -> {b}" for a, targets in GRAPH.items() if _layer(a) == "components"
              for b in targets if _layer(b) == "components" and b != "components"]
    assert across == []


def test_the_spec_and_the_lake_import_nothing_built_on_them():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() if _within(a, FOUNDATIONS)
              for b in targets if _within(b, ABOVE_FOUNDATIONS)]
    assert upward == []


def test_no_circles_among_the_library_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for a, targets in GRAPH.items():
        if _layer(a) == "library":
            packages[_unit(a)] |= {_unit(b) for b in targets if _layer(b) == "library" and _unit(b) != _unit(a)}
    assert _cycles(packages) == []


def test_no_circles_among_modules():
    """Module by module too, a package's __init__ included: a registry in an __init__ imports its
    implementations, so what they share lives in a base module, not in the __init__ that imports them."""
    assert _cycles(GRAPH) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while (member := stack.pop()) != node:
                component.append(member)
            if component:
                found.append(sorted([node, *component]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", sorted((ROOT / "components").glob("*.py")), ids=lambda p: p.name)
def test_steps_never_ask_which_platform_they_run_on(path: Path):
    """No step names a platform: no `spec.gke`, no platform module, no Kubernetes; they call what they are handed."""
    name = _module_name(path)
    assert [m for m in GRAPH[name] if _within(m, PLATFORM_MODULES)] == []
    tree = ast.parse(path.read_text())
    named = [node.lineno for node in ast.walk(tree)
             if (isinstance(node, ast.Attribute) and node.attr in ("gke", "namespace"))
             or (isinstance(node, ast.Name) and "gke" in node.id.lower())]
    assert named == [], f"{path.name} asks about the platform at lines {named}"


# --- docs/architecture.md's diagram ---------------------------------------------------------------------

# Not drawn: modules anyone may import, which import no other servesweep module (the package itself: the version).
LEAVES = ("servesweep.secrets", "servesweep.synthetic_task", "servesweep.accuracy", "servesweep.llmc_worker",
          "servesweep.yamlfile", "servesweep.extras", "servesweep.outcome", "servesweep.runlock",
          "servesweep.vllm_plugin", "servesweep.quantization", "servesweep.nvml", "servesweep.lmeval_worker")
_EDGE = re.compile(r"^\s*(\w+)(?:\[[^\]]*\])?\s*-->\s*(\w+)")


def _node(module: str) -> str:
    """A module's node in the diagram: cli, pipelines, components, or the library package's last name."""
    if module == "servesweep.cli":
        return "cli"
    top = module.split(".")[0]
    return top if top in ("pipelines", "components") else _unit(module).split(".")[-1]


def _drawn() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn: dict[str, set[str]] = defaultdict(set)
    for line in block.splitlines():
        if match := _EDGE.match(line):
            drawn[match.group(1)].add(match.group(2))
    return drawn


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.get(start, ()))
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack += graph.get(node, ())
    return seen


def _leaf(module: str) -> bool:
    return module == "servesweep" or _within(module, LEAVES)


def test_the_leaves_import_no_other_servesweep_module():
    assert [f"{a} -> {b}" for a, targets in GRAPH.items() if _leaf(a) for b in targets if not _leaf(b)] == []


def test_the_architecture_diagram_matches_the_imports():
    """Every arrow drawn is an import, and every import between drawn packages is reached by the arrows."""
    drawn = _drawn()
    nodes = set(drawn) | {b for targets in drawn.values() for b in targets}
    code: dict[str, set[str]] = defaultdict(set)
    for a, targets in GRAPH.items():
        for b in targets:
            if not _leaf(a) and not _leaf(b) and _node(a) != _node(b):
                code[_node(a)].add(_node(b))
    assert set(code) <= nodes, "a package missing from the diagram"
    assert [f"{a} --> {b}" for a, targets in drawn.items() for b in targets if b not in code[a]] == []
    assert [f"{a} -> {b}" for a, targets in code.items() for b in targets if b not in _reach(drawn, a)] == []
