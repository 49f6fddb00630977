"""The README's command lines use options that exist, and its two set-up commands are .ci/run's."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from edgekit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _command_lines() -> list[str]:
    """`edgekit <command> ...` lines of the README's bash blocks, comments removed."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("edgekit ")]


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in command.params:
        names.update(getattr(p, "opts", []))
        names.update(getattr(p, "secondary_opts", []))
    return names


def test_the_readme_shows_each_command() -> None:
    shown = {ln.split()[1] for ln in _command_lines()}
    assert {"export", "bench", "inspect", "verify"} <= shown


@pytest.mark.parametrize("line", _command_lines())
def test_every_option_in_a_readme_command_exists(line: str) -> None:
    name = line.split()[1]
    assert name in main.commands, line
    used = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line.split(" ", 2)[-1]))
    unknown = used - _options(main.commands[name])
    assert not unknown, f"{line}: {sorted(unknown)}"


def test_ci_runs_the_readmes_test_command() -> None:
    test_cmd = (
        'bash scripts/install-data.sh && pip install -e ".[train,dev]" && python -m pytest -q'
    )
    assert test_cmd in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[train,dev]"' in ci and "python -m pytest -q" in ci
    assert "bash scripts/install-data.sh" in ci


def _python_imports() -> list[tuple[str, str]]:
    """`from edgekit... import a, b` lines of the README's Python blocks."""
    blocks = "\n".join(re.findall(r"```python\n(.*?)```", README, re.S))
    return sorted(set(re.findall(r"^from (edgekit[\w.]*) import (.+)$", blocks, re.M)))


@pytest.mark.parametrize(("module", "names"), _python_imports())
def test_every_import_in_the_readme_resolves(module: str, names: str) -> None:
    import importlib

    imported = importlib.import_module(module)
    missing = [n.strip() for n in names.split(",") if not hasattr(imported, n.strip())]
    assert missing == [], f"from {module} import {names}"


def test_the_readme_python_blocks_import_from_edgekit() -> None:
    assert len(_python_imports()) >= 8
