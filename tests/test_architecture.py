"""The package layout holds: no import cycle between modules, no import that goes up the layers
(docs/architecture.md), importing the array rooms does not load numba, no module over 500 lines.

Every ``import`` of every module counts: at the top, inside functions and in ``TYPE_CHECKING`` blocks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medfuse"

#: layer of each room (the first dotted part after ``medfuse``; ``""`` is the package itself). A module may
#: import from its own layer and the ones below; the cycle check keeps rooms of one layer from looping.
LAYERS: dict[str, int] = {
    "": 0, "_version": 0, "errors": 0, "geometry": 0, "_core": 0,
    "_kernels": 1,
    "metrics": 2, "fusion": 2, "postprocess": 2, "plots": 2, "quality": 2,
    "io": 3,
    "folders": 4, "search": 4, "inference": 4,
    "synthetic": 5, "bench": 5,
    "cli": 6, "__main__": 6, "typing": 6,
}
LAYER_NAMES = ["core", "kernels", "arrays", "io", "jobs", "apps", "cli"]
#: modules placed in a lower layer than their room, each with its reason
PLACED: dict[str, tuple[int, str]] = {
}
#: modules allowed over 500 lines, each with its reason
LONG_MODULES: dict[str, str] = {
    "medfuse._kernels.fusion": "one flat kernel; issue 10 item 3 rewrites it with inlined helpers",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom, known: set[str]) -> list[str]:
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if not target.startswith("medfuse"):
        return []
    # `from pkg import sub` imports the submodule pkg.sub when there is one
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    return subs if len(subs) == len(node.names) else [target, *subs]


def import_graph() -> dict[str, set[str]]:
    """module -> the medfuse modules it imports (package ``__init__`` files count as modules)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                edges.update(_resolve(name, path.name == "__init__.py", node, known))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("medfuse"))
        edges.discard(name)
        graph[name] = {e for e in edges if e in known}
        unknown = {e for e in edges if e not in known}
        assert not unknown, f"{name} imports {sorted(unknown)}, which do not exist"
    return graph


def layer_of(module: str) -> int:
    if module in PLACED:
        return PLACED[module][0]
    parts = module.split(".")
    room = parts[1] if len(parts) > 1 else ""
    assert room in LAYERS, (f"{module} is in room {room!r}, which has no layer: add it to LAYERS here and to "
                            "docs/architecture.md")
    return LAYERS[room]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_imports_inside_functions_and_type_checking_blocks() -> None:
    graph = import_graph()
    # fusion/accumulators imports the kernels inside methods only; folders/fuse imports io at the top
    assert "medfuse._kernels.accumulate" in graph["medfuse.fusion.accumulators"]
    assert "medfuse.fusion.run" in graph["medfuse.fusion.accumulators"]
    assert "medfuse.io" in graph["medfuse.folders.fuse"] or "medfuse.io.folders" in graph["medfuse.folders.fuse"]


def test_no_import_cycle_between_modules() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _upward(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for importer, imported in sorted(graph.items()):
        for target in sorted(imported):
            low, high = layer_of(importer), layer_of(target)
            if high > low:
                wrong.append(f"{importer} (layer {low}, {LAYER_NAMES[low]}) imports {target} "
                             f"(layer {high}, {LAYER_NAMES[high]})")
    return wrong


def test_no_import_goes_up_the_layers() -> None:
    wrong = _upward(import_graph())
    assert not wrong, "imports that go up the layers (docs/architecture.md):\n" + "\n".join(wrong)


def test_the_layer_check_flags_a_planted_upward_import() -> None:
    graph = {"medfuse.fusion.arrays": {"medfuse.io.folders", "medfuse._kernels.fusion"}, "medfuse.io.folders": set()}
    assert _upward(graph) == ["medfuse.fusion.arrays (layer 2, arrays) imports medfuse.io.folders (layer 3, io)"]


def test_every_room_has_a_layer() -> None:
    for module in _modules():
        layer_of(module)


@pytest.mark.parametrize("module", ["medfuse", "medfuse.fusion", "medfuse.metrics", "medfuse.postprocess",
                                    "medfuse.quality"])
def test_importing_the_array_rooms_does_not_load_numba(module: str) -> None:
    code = f"import sys, {module}; print('numba' in sys.modules)"
    env_path = str(SRC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": ""}, cwd=SRC)
    assert out.stdout.strip() == "False", f"importing {module} loads numba"


def test_no_module_over_500_lines() -> None:
    long = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    over = {name: n for name, n in long.items() if n > 500 and name not in LONG_MODULES}
    assert not over, f"modules over 500 lines (split them, or list them with a reason in LONG_MODULES): {over}"
    stale = [name for name in LONG_MODULES if long.get(name, 0) <= 500]
    assert not stale, f"LONG_MODULES lists modules no longer over 500 lines: {stale}"
