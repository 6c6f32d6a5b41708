"""The layering docs/ARCHITECTURE.md describes, checked on the source: a change that breaks it fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Source folder -> the name it is installed under.
STAGES = ("sanitize", "package", "verify", "scan")
CLI_MODULES = ("nnseal/cli.py", "nnseal/commands/")


def library_files() -> list[Path]:
    files = [p for folder in STAGES for p in (REPO / folder).rglob("*.py")]
    files += [p for p in (REPO / "nnseal").rglob("*.py") if p.relative_to(REPO / "nnseal").parts[0] not in STAGES]
    return sorted(files)


def relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def is_cli(path: Path) -> bool:
    return relative(path).startswith(CLI_MODULES)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_every_library_module_is_seen():
    names = {relative(p) for p in library_files()}
    assert {"verify/install.py", "scan/scanner.py", "nnseal/format/oms.py", "nnseal/readers/zip_archive.py",
            "nnseal/cli.py"} <= names


@pytest.mark.parametrize("folder, forbidden", [
    ("verify", ("nnseal.package",)),
    ("sanitize", ("nnseal.package", "nnseal.verify", "nnseal.scan", "nnseal.transport", "nnseal.commands")),
    ("nnseal/format", ("nnseal.sanitize", "nnseal.package", "nnseal.verify", "nnseal.scan", "nnseal.transport",
                       "nnseal.commands")),
    ("package", ("nnseal.verify", "nnseal.scan", "nnseal.transport", "nnseal.commands")),
    ("scan", ("nnseal.package", "nnseal.commands")),
    ("nnseal/readers", ("nnseal.sanitize", "nnseal.package", "nnseal.verify", "nnseal.scan", "nnseal.transport",
                        "nnseal.commands")),
    # Transport brings bytes; what they are is for verify to say.
    ("nnseal/transport", ("nnseal.sanitize", "nnseal.package", "nnseal.verify", "nnseal.scan", "nnseal.commands")),
])
def test_data_flows_one_way(folder, forbidden):
    offenders = [f"{relative(p)} imports {module}" for p in (REPO / folder).rglob("*.py")
                 for module, _ in imports_of(p) if module.startswith(forbidden)]
    assert offenders == []


def test_no_module_imports_another_modules_private_names():
    offenders = [f"{relative(p)}: from {module} import {name}" for p in library_files()
                 for module, names in imports_of(p) if module.startswith("nnseal")
                 for name in names if name.startswith("_") and not name.startswith("__")]
    assert offenders == []


ENVIRONMENT_READ = re.compile(r"os\.environ|os\.getenv|getenv\(")


def test_only_the_cli_reads_the_environment():
    offenders = [f"{relative(p)}:{n}" for p in library_files() if not is_cli(p)
                 for n, line in enumerate(p.read_text().splitlines(), 1) if ENVIRONMENT_READ.search(line)]
    assert offenders == []


# A flag in a string literal: " --force", "(--passphrase", "`--trusted-key".
FLAG_IN_TEXT = re.compile(r"(?:^|[\s(`'\"])--[a-z][a-z0-9-]+")


def test_library_messages_name_no_flag():
    offenders = []
    for path in library_files():
        if is_cli(path) or relative(path) in ("nnseal/demo.py",):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG_IN_TEXT.search(node.value):
                # Docstrings may mention the CLI; messages may not.
                offenders.append(f"{relative(path)}:{node.lineno}: {node.value[:60]!r}")
    docstrings = {o for o in offenders if _is_docstring_line(o)}
    assert sorted(set(offenders) - docstrings) == []


def _is_docstring_line(offender: str) -> bool:
    path, line = offender.split(":")[:2]
    tree = ast.parse((REPO / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = node.body[0] if node.body else None
            if (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                    and doc.value.lineno == int(line)):
                return True
    return False


def test_one_version_source():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and not re.search(r'^version = "', pyproject, re.M)
    assert re.search(r'^__version__ = "\d+\.\d+\.\d+"$', (REPO / "nnseal/__init__.py").read_text(), re.M)


def test_checkout_has_the_installed_layout():
    for stage in STAGES:
        link = REPO / "nnseal" / stage
        assert link.is_symlink() and link.resolve() == (REPO / stage).resolve()


def test_ci_runs_readme_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"(python3 -m venv .*|\.venv/bin/ruff check .*)$", readme, re.M)
    assert len(commands) == 2
    for command in commands:
        assert command in ci
