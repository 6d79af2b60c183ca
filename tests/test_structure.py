"""The shape of the code, checked as the code is: the modules of `rag` import one another without a cycle of
any length, counting the imports made inside functions (a cycle there is one a refactoring turns into an
ImportError) and leaving out those only a type checker runs (`if TYPE_CHECKING:`); and no function is
longer than can be read at once."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (ROOT / "rag").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Each module and the modules of `rag` it imports; `from rag.answering import nlp` imports `rag.answering.nlp`."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skipped = _type_checking_only(tree)
        imported: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                imported.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[name] = {found for i in imported if (found := owner(i)) and found != name}
    return graph


def test_no_import_cycle_in_rag() -> None:
    graph = import_graph()
    assert "rag.store.index" in graph["rag.pipeline.store"] and "rag.config" in graph["rag.retrieval"]  # it is read
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"an import cycle: {' -> '.join(exc.args[1])}")


LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "rag.errors", "rag.types", "rag.dates", "rag.text", "rag.untrusted", "rag.registry", "rag.section",
        "rag.paths", "rag.durable", "rag.deadline", "rag.prompts", "rag.local_models", "rag.sqlite_store",
    ),
    ("rag.backends",),
    ("rag.config",),
    ("rag.ingest",),
    ("rag.store",),
    ("rag.retrieval",),
    ("rag.archive",),
    ("rag.answering", "rag.stories"),
    ("rag.pipeline",),
    ("rag.evaluation",),
    ("rag.server",),
    ("rag.cli",),
    ("rag",),
)  # fmt: skip
"""The sub-packages from the bottom up: a module may import its own layer and the layers below, never one
above (each package's docstring says why it sits where it does)."""


def layer(module: str) -> int:
    """The layer of the longest prefix of `module` that `LAYERS` names."""
    found = [(len(prefix), i) for i, names in enumerate(LAYERS) for prefix in names
             if module == prefix or module.startswith(prefix + ".")]  # fmt: skip
    assert found, f"{module} is in no layer: add it to LAYERS"
    return max(found)[1]


def test_no_module_imports_a_layer_above_its_own() -> None:
    graph = import_graph()
    upward = [
        f"{module} (layer {layer(module)}) imports {imported} (layer {layer(imported)})"
        for module, imports in graph.items()
        for imported in imports
        if layer(imported) > layer(module)
    ]
    assert not upward, "\n".join(upward)
    assert layer("rag.store.index") < layer("rag.retrieval.corpus") < layer("rag.pipeline.store")  # read as meant


def test_every_package_says_what_it_owns() -> None:
    for init in (ROOT / "rag").rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} has no docstring"


LONGEST_FUNCTION = 80
"""Lines, docstring included: about what one screen shows."""


def test_no_function_is_longer_than_a_screen() -> None:
    paths = [*(ROOT / "rag").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]
    too_long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in paths
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not too_long, too_long
