"""The line between the device side (numpy only) and the workstation side (TensorFlow) holds.

Device side: edgekit.device, edgekit.bench, edgekit.report, edgekit.data and the shared
modules (config, errors, files, cli). Workstation side: edgekit._keras, edgekit.train,
edgekit.optimize, edgekit.export (but its TF-free `recipes` and `model_path`), edgekit.pipeline.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_no_tensorflow import BLOCKED, SITECUSTOMIZE

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgekit"
GENERATED = PACKAGE / "device" / "tflite_schema" / "schema_py_generated.py"
DEVICE_PACKAGES = ("device", "bench", "report", "data")
SHARED_MODULES = ("__init__", "config", "errors", "files", "cli", "cli_options", "presets")
WORKSTATION = (
    "edgekit._keras", "edgekit.train", "edgekit.optimize", "edgekit.pipeline",
    "edgekit.export.tflite", "edgekit.export.converter", "edgekit.export.model_io",
)  # fmt: skip
# The only places on the device side that may reach the workstation side, inside a function
# and on request: the `tf` runtime choice, the .keras baseline row of bench, and the two
# training commands of the CLI.
ALLOWED_LAZY = {
    ("device/worker.py", "_KerasModel.prepare"),
    ("device/worker.py", "_KerasModel.__init__"),
    ("cli.py", "export"),
    ("cli.py", "train"),
}
MAX_MODULE_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def device_side_files() -> list[Path]:
    files = [PACKAGE / f"{m}.py" for m in SHARED_MODULES]
    for pkg in DEVICE_PACKAGES:
        files += sorted(p for p in (PACKAGE / pkg).rglob("*.py") if p != GENERATED)
    return files


def _reaches_workstation(name: str) -> bool:
    from edgekit.export import _LAZY  # names edgekit.export imports on first use

    top = name.split(".")[0]
    lazy = name.rsplit(".", 1)
    if len(lazy) == 2 and lazy[0] == "edgekit.export" and lazy[1] in _LAZY:
        name = _LAZY[lazy[1]]
    return top in BLOCKED or any(name == w or name.startswith(w + ".") for w in WORKSTATION)


def imports_of(path: Path) -> list[tuple[str, str | None]]:
    """(imported module, qualified name of the enclosing function, or None at module level)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, func: str | None, prefix: str = "") -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, func, f"{prefix}{child.name}.")
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}{child.name}", f"{prefix}{child.name}.")
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, func) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child.module, func))
                found.extend((f"{child.module}.{a.name}", func) for a in child.names)
            visit(child, func, prefix)

    visit(tree, None)
    return found


def test_device_side_reaches_tensorflow_only_where_asked() -> None:
    offenders = []
    for path in device_side_files():
        rel = str(path.relative_to(PACKAGE))
        for name, func in imports_of(path):
            if _reaches_workstation(name) and (rel, func) not in ALLOWED_LAZY:
                offenders.append(f"{rel}: {name} (in {func or 'module level'})")
    assert offenders == []


def test_the_static_check_sees_a_tensorflow_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n    import tensorflow as tf\nfrom edgekit.train import x\n"
        "from edgekit.export import export_tflite, recipe_for\n"
        "class _KerasModel:\n    def g(self):\n        import tf_keras\n"
    )
    assert [(n, f) for n, f in imports_of(bad) if _reaches_workstation(n)] == [
        ("tensorflow", "f"), ("edgekit.train", None), ("edgekit.train.x", None),
        ("edgekit.export.export_tflite", None), ("tf_keras", "_KerasModel.g"),
    ]  # fmt: skip


def test_every_device_side_module_imports_with_tensorflow_blocked(tmp_path: Path) -> None:
    """Each module imported in a fresh Python where importing TensorFlow raises."""
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "attempts.log"
    names = [module_name(p) for p in device_side_files()]
    names += ["edgekit.export.recipes", "edgekit.export.model_path", "edgekit.export"]
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{BLOCKED!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT), env.get("PYTHONPATH", "")])
    env["EDGEKIT_TF_IMPORT_LOG"] = str(log)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert not log.exists(), log.read_text()
    assert len(names) > 25  # every module of the device side, not a handful


@pytest.mark.parametrize(
    "path", sorted(p for p in PACKAGE.rglob("*.py") if p != GENERATED), ids=str
)
def test_no_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_the_carried_schema_has_its_license() -> None:
    folder = GENERATED.parent
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert "automatically generated by the FlatBuffers compiler" in GENERATED.read_text()


def test_the_device_install_pulls_neither_tensorflow_nor_ray() -> None:
    """`pip install edgekit` is the device side: its dependencies name no training stack."""
    import re

    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].strip().lower()
             for d in project["dependencies"]}  # fmt: skip
    heavy = {"tensorflow", "tf-keras", "tensorflow-model-optimization", "ray",
             "ai-edge-quantizer", "keras"}  # fmt: skip
    assert names and not names & heavy, names & heavy
    assert "ray[tune]>=2.60,<3" in project["optional-dependencies"]["ray"]
