"""The layout shows the architecture (issue 20, item 6): ``medi/`` is grouped into wings (stages/, executors/,
release/, authoring/, adapters/) over a few cross-cutting modules, and no import cycle joins two modules or two
wings. What each module imports is read from its source with ``ast``: no heavy library is loaded. That every module
also imports alone in a fresh interpreter is tests/test_executors.py's check.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support import PROJECT_ROOT

import medi

PACKAGE = PROJECT_ROOT / "medi"
WINGS = ("adapters", "stages", "executors", "release", "authoring")
ENTRY_POINTS = {"medi.build", "medi.cli", "medi.probe"}  # they run the wings; nothing below imports them
DOCUMENTED_OLD_NAMES = ("export", "verify", "stats", "select")  # README: `From Python:` by their old module


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _statements(tree: ast.AST, *, at_import: bool):
    """The import statements of a module: those run when it is imported (not in functions, not under
    TYPE_CHECKING), or all of them."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif at_import and (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or _type_checking(node)
        ):
            continue
        else:
            todo.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, known: set[str], *, at_import: bool) -> set[str]:
    """The medi modules ``path`` imports; ``medi`` itself (the lazy facade) is left out."""
    found = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8")), at_import=at_import):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            names = []
        found.update(name for name in names if name in known and name != "medi")
    return found


def _related(a: str, b: str) -> bool:
    """A package and its own modules: Python loads the package first, and a package that imports its modules at
    its end registers them (the adapter kinds); that wiring is not a cycle between parts of medi."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph``, or None (depth-first search, colours)."""
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def wing(module: str) -> str:
    """``medi.stages.mine`` -> ``medi.stages``; a top-level module is its own node."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or parts[1] in WINGS else module


def module_graph(*, at_import: bool) -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {
        name: {t for t in imports_of(path, known, at_import=at_import) if not _related(name, t)}
        for name, path in found.items()
    }


def wing_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, targets in module_graph(at_import=False).items():
        if name == "medi":
            continue
        graph.setdefault(wing(name), set()).update(wing(t) for t in targets if wing(t) != wing(name))
    return graph


def test_the_wings_are_packages_and_the_pipeline_modules_live_in_them():
    found = modules()
    for name in WINGS:
        assert f"medi.{name}" in found, f"medi/{name}/ is not a package"
    for name in ("sample", "normalize", "dedup", "decontaminate", "filter", "select", "mine", "instruct", "units"):
        assert f"medi.stages.{name}" in found
    for name in ("shard", "manifest", "verify", "export", "publish", "stats"):
        assert f"medi.release.{name}" in found
    for name in ("lint", "review", "scaffold"):
        assert f"medi.authoring.{name}" in found
    assert (PACKAGE / "authoring" / "review_page.html").is_file()  # package data moved with the review page


def test_no_import_cycle_between_modules_at_import_time():
    assert cycle(module_graph(at_import=True)) is None


def test_no_cycle_between_wings_counting_imports_inside_functions():
    graph = wing_graph()
    assert {"medi.stages", "medi.executors", "medi.release", "medi.authoring"} <= set(graph)
    assert cycle(graph) is None


def test_wings_depend_in_one_direction():
    """stages know nothing of who runs them or what is made of their rows; the release and authoring wings do not
    run stages; nothing below the entry points imports them."""
    graph = wing_graph()
    assert not graph["medi.stages"] & {"medi.executors", "medi.release", "medi.authoring", *ENTRY_POINTS}
    assert not graph["medi.executors"] & {"medi.release", "medi.authoring", *ENTRY_POINTS}
    assert not graph["medi.release"] & {"medi.stages", "medi.executors", "medi.authoring", *ENTRY_POINTS}
    assert not graph["medi.authoring"] & {"medi.executors", *ENTRY_POINTS}
    for name, targets in graph.items():
        if name not in ENTRY_POINTS and name != "medi.cli":
            assert not targets & {"medi.build", "medi.cli"}, f"{name} imports an entry point"


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_code_of_the_repo_imports_an_old_module_path():
    old = {f"medi.{name}" for name in medi._MOVED}
    offenders = []
    for folder in ("medi", "tests", "bench", "scripts"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in _statements(ast.parse(path.read_text(encoding="utf-8")), at_import=False):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.module == "medi":
                    names = [f"medi.{a.name}" for a in node.names]
                offenders += [f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {n}" for n in names if n in old]
    assert not offenders


def test_documented_old_import_paths_still_give_the_moved_modules():
    """Code outside the repo that imports a module by its old name gets the same module, and a warning."""
    code = (
        "import importlib, sys, warnings\nimport medi\nwarnings.simplefilter('always')\n"
        "for old in sys.argv[1:]:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        module = importlib.import_module('medi.' + old)\n"
        "    assert module is importlib.import_module('medi.' + medi._MOVED[old]), old\n"
        "    print(old, module.__name__, caught[0].category.__name__, caught[0].message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *DOCUMENTED_OLD_NAMES],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines] == [
        [old, f"medi.{medi._MOVED[old]}", "DeprecationWarning"] for old in DOCUMENTED_OLD_NAMES
    ]
