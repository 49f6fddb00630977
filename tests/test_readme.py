"""The command lines of README.md and docs/*.md use options that exist, their Python imports
resolve, and README's two set-up commands are .ci/run's."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from edgekit.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
# README and the manual: every page's commands and imports are checked alike.
TEXTS = {"README.md": README} | {f"docs/{p.name}": p.read_text(encoding="utf-8") for p in DOC_PAGES}
MAIN_JOB = (
    'bash scripts/install-data.sh && pip install -e ".[train,plot]" && edgekit export && '
    "edgekit bench"
)
TEST_CMD = 'bash scripts/install-data.sh && pip install -e ".[train,dev]" && python -m pytest -q'


def _command_lines(text: str | None = None) -> list[str]:
    """`edgekit <command> ...` lines of the bash blocks of `text` (default: README and every
    docs page), comments removed."""
    texts = [text] if text is not None else list(TEXTS.values())
    blocks = [b for t in texts for b in re.findall(r"```bash\n(.*?)```", t, re.S)]
    lines = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if ln.startswith("edgekit ")]


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for p in command.params:
        names.update(getattr(p, "opts", []))
        names.update(getattr(p, "secondary_opts", []))
    return names


def test_the_readme_shows_each_command() -> None:
    shown = {ln.split()[1] for ln in _command_lines(README)}
    assert {"export", "bench", "inspect", "verify"} <= shown


def test_the_docs_show_every_command() -> None:
    shown = {ln.split()[1] for ln in _command_lines()}
    assert set(main.commands) - shown == set()


def test_the_readme_is_under_200_lines() -> None:
    assert len(README.splitlines()) < 200


def _nav_pages(nav: object) -> set[str]:
    """The Markdown files named anywhere in mkdocs.yml's nav (nested lists of {title: page})."""
    if isinstance(nav, str):
        return {nav}
    items = list(nav.values()) if isinstance(nav, dict) else nav
    assert isinstance(items, list), nav
    return set().union(*(_nav_pages(i) for i in items))


def test_every_docs_page_is_in_the_mkdocs_nav() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    missing = {p.name for p in DOC_PAGES} - _nav_pages(config["nav"])
    assert missing == set(), f"add {sorted(missing)} under nav: in mkdocs.yml"


@pytest.mark.parametrize("line", _command_lines())
def test_every_option_in_a_readme_command_exists(line: str) -> None:
    name = line.split()[1]
    assert name in main.commands, line
    used = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", line.split(" ", 2)[-1]))
    unknown = used - _options(main.commands[name])
    assert not unknown, f"{line}: {sorted(unknown)}"


def test_the_readme_and_the_docs_home_give_the_two_set_up_commands() -> None:
    for name in ("README.md", "docs/index.md"):
        assert MAIN_JOB in TEXTS[name] and TEST_CMD in TEXTS[name], name


def test_ci_runs_the_readmes_test_command() -> None:
    assert TEST_CMD in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[train,dev]"' in ci and "python -m pytest -q" in ci
    assert "bash scripts/install-data.sh" in ci


def _python_imports() -> list[tuple[str, str]]:
    """`from edgekit... import a, b` lines of the Python blocks of README and the docs."""
    blocks = "\n".join(
        b for t in TEXTS.values() for b in re.findall(r"```python\n(.*?)```", t, re.S)
    )
    return sorted(set(re.findall(r"^from (edgekit[\w.]*) import (.+)$", blocks, re.M)))


@pytest.mark.parametrize(("module", "names"), _python_imports())
def test_every_import_in_the_readme_resolves(module: str, names: str) -> None:
    import importlib

    imported = importlib.import_module(module)
    missing = [n.strip() for n in names.split(",") if not hasattr(imported, n.strip())]
    assert missing == [], f"from {module} import {names}"


def test_the_python_blocks_import_from_edgekit() -> None:
    assert len(_python_imports()) >= 8
