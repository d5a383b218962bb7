"""Every registered attack has a test of its own: a test marked `@pytest.mark.attack("<name>")`.

The marks are read from the syntax trees of the test files (decorators, `pytestmark` lists and
`pytest.param(..., marks=...)` alike), so a name that merely appears in a string does not count.
"""

import ast
from pathlib import Path

from miakit.attacks import ATTACKS

TESTS = Path(__file__).parent


def _is_attack_mark(node: ast.expr) -> bool:
    """`pytest.mark.attack` or `mark.attack`."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "attack"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    )


def marked_attacks(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _is_attack_mark(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def all_marked_attacks() -> set[str]:
    return set().union(*(marked_attacks(p.read_text()) for p in TESTS.rglob("test_*.py")))


def test_every_registered_attack_has_a_marked_test():
    untested = sorted(set(ATTACKS) - all_marked_attacks())
    assert not untested, f"registered attacks with no test marked @pytest.mark.attack: {untested}"


def test_marks_name_registered_attacks():
    unknown = sorted(all_marked_attacks() - set(ATTACKS))
    assert not unknown, f"tests marked with attacks that are not registered: {unknown}"


def test_the_parser_sees_marks_and_ignores_strings():
    source = """
import pytest
pytestmark = [pytest.mark.attack("a")]

@pytest.mark.attack("b")
def test_b():
    assert "pytest.mark.attack('not-a-mark')"

@pytest.mark.parametrize("x", [pytest.param(1, marks=pytest.mark.attack("c"))])
def test_c(x):
    pass
"""
    assert marked_attacks(source) == {"a", "b", "c"}


def test_every_attack_option_is_described_and_listed():
    """Each option of each registered attack has a pydantic Field description, and
    `miakit attacks list` prints it beside the option's name."""
    from typer.testing import CliRunner

    from miakit.cli import app

    undescribed = [
        f"{name}.{option}"
        for name, cls in ATTACKS.items()
        for option, field in cls.Config.model_fields.items()
        if not field.description
    ]
    assert not undescribed, f"attack options without a description: {undescribed}"
    result = CliRunner().invoke(app, ["attacks", "list"], terminal_width=400)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for cls in ATTACKS.values():
        for option, field in cls.Config.model_fields.items():
            assert f"{option}: {field.default!r} — " in flat
            assert " ".join(field.description.split()[:3]) in flat
