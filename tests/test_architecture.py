"""The layers of docs/architecture.md hold: no import loops, no import that runs upward, and no
layer promised higher than its imports need (the picture shows the code as it is, not as it
may be). ``python tests/test_architecture.py`` prints each unit's layer and real height.

Every ``import`` in src/ponder counts, wherever it stands (inside a function, under
TYPE_CHECKING): a lazy import that dodges a loop is still a loop.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Lower numbers are lower layers. A module may import its own unit and any lower layer.
LAYERS = {
    "ponder.types": 0, "ponder.errors": 0, "ponder.version": 0,
    "ponder.budget": 1, "ponder.trace": 1, "ponder.registry": 1, "ponder.view": 1,
    "ponder.sandbox": 2, "ponder.backends": 2,
    "ponder.domains": 3,
    "ponder.core": 4,
    "ponder.verifiers": 5,
    "ponder.strategies": 6, "ponder.rewards": 6,
    "ponder.builtins": 7, "ponder.runner": 7,
    "ponder.api": 8, "ponder.presets": 8,
    "ponder.eval": 9, "ponder.server": 9,
    "ponder.tune": 10, "ponder.mcp": 10, "ponder.llm_plugin": 10, "ponder": 10,
    "ponder.cli": 11,
    "ponder.__main__": 12,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "ponder").rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The ponder modules a file imports (``from a import b``: a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ponder"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "ponder":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def unit(module: str) -> str:
    """The layer entry a module belongs to: the longest key it falls under."""
    matches = [key for key in LAYERS if module == key or module.startswith(key + ".")]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and the architecture doc")
    return max(matches, key=len)


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def test_every_module_is_in_a_layer():
    for name in modules():
        unit(name)


def test_no_import_runs_upward():
    upward = []
    for source, targets in graph().items():
        for target in targets:
            src_unit, dst_unit = unit(source), unit(target)
            if src_unit != dst_unit and LAYERS[dst_unit] >= LAYERS[src_unit]:
                upward.append(f"{source} -> {target}")
    assert upward == []


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_loops():
    assert cycles(graph()) == []


@pytest.mark.parametrize("edges,expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
    ({"a": {"a"}}, [["a"]]),
])
def test_the_loop_finder_finds_loops(edges, expected):
    assert cycles(edges) == expected


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from ponder.core.context import Context\n"
                      "def f():\n    from ponder import registry\n    import ponder.api\n")
    assert imports(source, {"ponder.registry", "ponder.core.context"}) == {
        "ponder.core.context", "ponder.registry", "ponder.api"}


def unit_imports() -> dict[str, set[str]]:
    """The other layer entries each one imports."""
    out: dict[str, set[str]] = {key: set() for key in LAYERS}
    for source, targets in graph().items():
        for target in targets:
            if unit(source) != unit(target):
                out[unit(source)].add(unit(target))
    return out


def heights(uses: dict[str, set[str]]) -> dict[str, int]:
    """Each entry's real height: 0 with no imports, else one above the highest it imports."""
    out: dict[str, int] = {}

    def height(key: str) -> int:
        if key not in out:
            out[key] = 1 + max((height(d) for d in uses[key]), default=-1)
        return out[key]

    for key in uses:
        height(key)
    return out


def layer_report(uses: dict[str, set[str]]) -> list[str]:
    real = heights(uses)
    return [f"{key:20} layer {LAYERS[key]:2}  needs {needed(key, uses):2}  real height "
            f"{real[key]:2}" for key in sorted(LAYERS, key=lambda k: (LAYERS[k], k))]


def needed(key: str, uses: dict[str, set[str]]) -> int:
    """The lowest layer the table could give ``key``: one above the layers it imports."""
    return 1 + max((LAYERS[d] for d in uses[key]), default=-1)


def test_no_layer_is_promised_higher_than_its_imports_need():
    """A layer one above what an entry's imports need is room to grow; more is a picture that
    no longer shows the code (an entry that imports only layer 0 drawn at layer 8)."""
    uses = unit_imports()
    loose = [f"{key}: layer {LAYERS[key]}, its imports need {needed(key, uses)}"
             for key in LAYERS if LAYERS[key] > needed(key, uses) + 1]
    assert loose == [], "\n".join(["the table promises more than the code needs:", *loose,
                                    "", *layer_report(uses)])


def private_imports(path: Path, known: set[str]) -> list[str]:
    """The private names (``_name``) a file imports from another layer entry's modules."""
    source = unit(module_name(path))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "ponder" and unit(node.module) != source:
            found += [f"{module_name(path)} imports {node.module}.{a.name}"
                      for a in node.names if a.name.startswith("_") and a.name != "__version__"]
    return found


def test_no_module_imports_another_packages_private_names():
    """What a package keeps private (a leading underscore) stays inside it: another package
    that needs it gets a public name, which says it may be relied on."""
    found = modules()
    assert [line for path in found.values() for line in private_imports(path, set(found))] == []


def faces() -> dict[str, set[str]]:
    """Each package's public face: the names its ``__init__`` lists in ``__all__``."""
    out = {}
    for key in LAYERS:
        init = SRC / Path(*key.split(".")) / "__init__.py"
        if key == "ponder" or not init.is_file():
            continue
        for node in ast.parse(init.read_text()).body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
                out[key] = set(ast.literal_eval(node.value))
    return out


def test_every_package_names_what_others_may_import():
    """A newcomer reads one file per package to know what they may use from it: its
    ``__init__``'s ``__all__``. Every name another package imports from it is listed there."""
    found, face = modules(), faces()
    missing = [key for key in LAYERS if key != "ponder" and key not in face
               and (SRC / Path(*key.split(".")) / "__init__.py").is_file()]
    assert missing == [], f"packages without __all__: {missing}"
    outside = []
    for name, path in found.items():
        source = unit(name)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                    and node.module.split(".")[0] == "ponder"):
                continue
            target = unit(node.module)
            if target == source or target not in face:
                continue
            outside += [f"{name} imports {node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" not in found and a.name not in face[target]]
    assert outside == [], "add these to the package's __all__ (and _LAZY), or keep them " \
        "inside it:\n" + "\n".join(outside)


def test_heights_are_one_above_the_highest_import():
    assert heights({"a": set(), "b": {"a"}, "c": {"a", "b"}}) == {"a": 0, "b": 1, "c": 2}


if __name__ == "__main__":
    print("\n".join(layer_report(unit_imports())))
