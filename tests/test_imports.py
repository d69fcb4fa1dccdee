"""The package's imports: no cycle, and none hidden inside a function to get round one.

An import inside a function is how a cycle is usually papered over: it works until the day the function is
called during an import. Services put jobs on the queue through archive_app.queue (by dotted path), so
nothing needs that.
"""

from __future__ import annotations

import ast
import graphlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "archive_app"

# (file, function) -> why the import has to wait for the call. Keep it short.
ALLOWED_FUNCTION_IMPORTS = {
    ("archive_app/apps.py", "ready"): (
        "Django imports apps.py before any model exists; AppConfig.ready is where it says to import modules "
        "that need the models (signal receivers, checks)"
    ),
    ("archive_app/apps.py", "warm_worker"): (
        "called from AppConfig.ready in an RQ worker, before it forks: the job modules need the models, so they "
        "load there, once per worker rather than once per job"
    ),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def imported_names(node: ast.Import | ast.ImportFrom, modules: dict[str, Path], importer: str) -> set[str]:
    """The package's modules this import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = importer.split(".")
            if modules[importer].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return {name for name in names if name in modules and name != importer}


def walk(node: ast.AST, function: str | None = None):
    """(import statement, enclosing function or None) for every import outside `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, function
        inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
        yield from walk(child, inner)


def test_no_module_of_the_package_is_imported_inside_a_function():
    modules = package_modules()
    found = []
    for name, path in modules.items():
        relative = path.relative_to(ROOT).as_posix()
        for node, function in walk(ast.parse(path.read_text(), filename=relative)):
            if function is None or not imported_names(node, modules, name):
                continue
            if (relative, function) not in ALLOWED_FUNCTION_IMPORTS:
                found.append(f"{relative}:{node.lineno} in {function}(): {ast.unparse(node)}")
    assert not found, "import these at the top of the module (archive_app.queue enqueues jobs):\n" + "\n".join(found)


def test_the_module_import_graph_has_no_cycle():
    modules = package_modules()
    graph = {
        name: {
            target
            for node, function in walk(ast.parse(path.read_text()))
            if function is None
            for target in imported_names(node, modules, name)
        }
        for name, path in modules.items()
    }
    assert "archive_app.archive.batches" in graph["archive_app.jobs"]  # the graph sees `from archive_app.x import y`
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_the_entry_points_import_first_in_a_fresh_interpreter():
    """The worker loads jobs, the scheduler cron, the web process urls: each first, in a new process, as
    they do (a cycle shows only from the module that enters it)."""
    for module in ["archive_app.jobs", "archive_app.cron", "archive_app.urls", "archive_app.queue"]:
        code = f"import django; django.setup(); import {module}"
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{module}: {result.stderr[-2000:]}"
