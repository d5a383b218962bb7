"""The public surface: `miakit.__all__` exactly (removing a name is a deliberate change), every
public function documented, and `miakit.attacks` / `miakit.evaluate` staying the public functions
although they are also the names of subpackages."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import miakit
from miakit.cli import app

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = [
    "AttackInfo",
    "AttackOption",
    "AttackUnavailable",
    "MiakitError",
    "Run",
    "StaleInputs",
    "Verdict",
    "__version__",
    "attacks",
    "audit",
    "evaluate",
    "score",
]


def test_all_is_the_public_surface():
    assert sorted(miakit.__all__) == sorted(PUBLIC)
    for name in miakit.__all__:
        assert hasattr(miakit, name), name


def test_every_public_name_has_a_docstring():
    for name in miakit.__all__:
        value = getattr(miakit, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            assert (value.__doc__ or "").strip(), name
    for function in (miakit.score, miakit.evaluate, miakit.audit):
        for part in ("Args:", "Returns:", "Raises:", "MiakitError"):
            assert part in function.__doc__, (function.__name__, part)
    for name, member in inspect.getmembers(miakit.Run):
        if not name.startswith("_") or name == "_repr_html_":
            assert (member.__doc__ or "").strip(), name


#: Imports miakit, then every module of it, and prints what the two names are.
EVERY_MODULE = """
import importlib, json, pkgutil, sys
import miakit
skipped = []
for info in pkgutil.walk_packages(miakit.__path__, "miakit."):
    if info.name == "miakit.__main__":  # runs the CLI
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:  # an optional dependency (ray) that is not installed
        skipped.append(info.name)
from miakit.attacks import lira
from miakit.evaluate import metrics
print(json.dumps({
    "attacks": miakit.attacks.__module__, "evaluate": miakit.evaluate.__module__,
    "packages": [sys.modules["miakit.attacks"].__name__, sys.modules["miakit.evaluate"].__name__],
    "skipped": skipped,
}))
"""


def test_attacks_and_evaluate_stay_the_public_functions_after_every_import():
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", EVERY_MODULE],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["attacks"] == found["evaluate"] == "miakit.api.arrays"
    assert found["packages"] == ["miakit.attacks", "miakit.evaluate"]
    assert found["skipped"] == [n for n in found["skipped"] if n.startswith("miakit.executors.")]


def test_no_code_imports_the_two_subpackages_through_the_attribute():
    """`import miakit.attacks.x as y` (and `miakit.attacks.x` after `import miakit.attacks.x`)
    reads the attribute miakit.attacks, the function: use `from miakit.attacks import x`."""
    pattern = re.compile(r"^\s*import miakit\.(attacks|evaluate)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "tests", "bench", "studies")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_the_cli_lists_the_attacks_of_the_public_function():
    result = CliRunner().invoke(app, ["attacks", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for info in miakit.attacks():
        assert info.name in result.output
    assert "offline_tail: 'one-sided'" in result.output


def test_importing_the_config_layer_loads_no_api():
    """The public names load when first read: the config layer (and `--help`) stay light."""
    code = (
        "import sys, miakit.config; "
        "print([m for m in ('miakit.api.arrays', 'miakit.pipeline', 'pandas', 'scipy.stats') "
        "if m in sys.modules])"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"
    assert "score" in dir(miakit) and "attacks" in dir(miakit)


def test_the_cli_imports_only_the_public_api_and_the_pipeline():
    import ast

    tree = ast.parse((ROOT / "src" / "miakit" / "cli.py").read_text())
    used = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {m for m in used if m and m.startswith("miakit")} <= {"miakit", "miakit.pipeline"}
