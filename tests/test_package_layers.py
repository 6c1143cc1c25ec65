"""The imports inside ``lensscore/`` follow DESIGN.md's layers: no cycle, no other module's
private names, each module importing only its own layer or below.

The package is read with :mod:`ast`, not imported, so that lazy imports inside functions count
as much as those at the top (a cycle through a function-level import is still a cycle; it only
fails later). The package checked is the one ``lensscore`` resolves to: run with
``PYTHONPATH=/path/to/checkout`` to check another checkout.

The rule for private names: a module never uses another module's ``_``-prefixed names
(``from .readers import _Plane``, ``readers._Plane``). A private *module* (``_session``,
``_entry``, ``_lazy``, ``_optional``, ``_version``) is one of the package's private helpers
(DESIGN.md: "private helpers in ``_``-prefixed modules"): the package's modules import it and
its public names by name; its ``_``-prefixed names stay its own. Dunder names
(``__version__``) are not private.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

#: DESIGN.md's layers, bottom up; a module may import modules of its own layer or below.
#: Two refinements of DESIGN's picture (explained where they are):
LAYERS: list[tuple[str, set[str]]] = [
    ("facts", {"_version", "_lazy", "_optional", "config", "errors", "survey", "trained",
               "files"}),
    ("finding and reading", {"sources", "readers", "fastfits", "tanwcs"}),
    ("the cutout on the model's grid", {"geometry", "grid", "cutout"}),
    # one input read onto the grid: a file (io.load_cutout) or an object cut from its survey
    # tiles (tilecut), and load_source, the dispatch between them that the pipeline calls
    ("loading one input", {"io", "tilecut"}),
    ("preprocess", {"preprocess"}),
    ("scoring", {"scorer", "committee", "modelmeta", "_session", "_split", "metrics"}),
    ("the pipeline", {"pipeline"}),
    # DESIGN.md lists the catalog among the outputs, above the scan; but a scan streams its
    # rows into the catalog as it goes and reads labels and object catalogs with its reader,
    # so the catalog format (schema, writer, reader, metadata) sits below the scan
    ("the catalog format", {"catalog"}),
    ("inputs at scale", {"scan", "tiles", "distributed"}),
    ("outputs", {"gallery", "merge"}),
    ("cli", {"cli"}),
    ("entry points", {"_entry", "__main__", "__init__"}),
]
LAYER = {m: k for k, (_, mods) in enumerate(LAYERS) for m in mods}


def _package_dir() -> Path:
    spec = importlib.util.find_spec("lensscore")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _scan_package(pkg: Path):
    """``(modules, edges, private_uses)``: edges ``{module: {imported module: line}}``;
    private uses ``[(module, line, "target._name")]``."""
    modules = {p.stem for p in pkg.glob("*.py")}
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    private: list[tuple[str, int, str]] = []
    for m in sorted(modules):
        tree = ast.parse((pkg / f"{m}.py").read_text(encoding="utf-8"), f"{m}.py")
        aliases: dict[str, str] = {}  # local name -> lensscore module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    base = node.module
                elif node.level == 0 and (node.module or "").split(".")[0] == "lensscore":
                    base = node.module.partition(".")[2] or None
                else:
                    continue
                for a in node.names:
                    if base is None or base == "__init__":  # from . import x: modules
                        if a.name in modules:
                            edges[m].setdefault(a.name, node.lineno)
                            aliases[a.asname or a.name] = a.name
                        continue
                    edges[m].setdefault(base.split(".")[0], node.lineno)
                    if _private(a.name) and a.name not in modules:
                        private.append((m, node.lineno, f"{base}.{a.name}"))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == "lensscore" and len(parts) > 1 and parts[1] in modules:
                        edges[m].setdefault(parts[1], node.lineno)
                        if a.asname:
                            aliases[a.asname] = parts[1]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                private.append((m, node.lineno, f"{aliases[node.value.id]}.{node.attr}"))
        edges[m].pop(m, None)
    return modules, edges, private


@pytest.fixture(scope="module")
def package():
    return _scan_package(_package_dir())


def _cycle(edges) -> list[str] | None:
    """One import cycle, as a path ``a -> b -> ... -> a``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_package_is_read(package):
    modules, edges, _ = package
    assert {"scan", "io", "scorer", "cli"} <= modules
    assert "scorer" in edges["scan"] or "committee" in edges["scan"]


def test_no_import_cycle(package):
    _, edges, _ = package
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_other_modules_private_names(package):
    _, _, private = package
    shown = [f"{m}.py:{line} uses {what}" for m, line, what in private]
    assert not shown, "private names across modules:\n" + "\n".join(shown)


def test_every_module_has_a_layer(package):
    modules, _, _ = package
    assert not sorted(modules - set(LAYER)), "place these in LAYERS"


def test_imports_go_down_the_layers(package):
    _, edges, _ = package
    up = [f"{m} ({LAYERS[LAYER[m]][0]}) imports {t} ({LAYERS[LAYER[t]][0]}) at line {line}"
          for m, targets in sorted(edges.items()) if m in LAYER
          for t, line in sorted(targets.items()) if t in LAYER and LAYER[t] > LAYER[m]]
    assert not up, "imports up the layers:\n" + "\n".join(up)


def test_the_checks_can_fail():
    """Each check finds what it is there to find (on a made-up graph)."""
    assert _cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": 1}, "b": {}}) is None
    assert _private("_Plane") and not _private("__version__") and not _private("Plane")


@pytest.mark.parametrize("pkg", ["train", "export"])
def test_train_and_export_take_no_other_modules_private_names(pkg):
    """DESIGN's rule for private names holds in the training and export packages too (their
    relative imports; what they take from lensscore is checked above through lensscore)."""
    root = _package_dir().parent / pkg
    _, edges, private = _scan_package(root)
    shown = [f"{pkg}/{m}.py:{line} uses {what}" for m, line, what in private]
    assert not shown, "private names across modules:\n" + "\n".join(shown)
    cycle = _cycle(edges)
    assert cycle is None, f"{pkg}: import cycle: " + " -> ".join(cycle)
