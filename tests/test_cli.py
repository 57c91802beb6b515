"""The helpers every script shares: self-documenting --help and JSON options that fail with
the option's name; and that every script in scripts/ uses them the same way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from maskrcnn_pipeline.cli import json_option, parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError
from tests.support.paths import REPO
from tests.support.workflow import run_script

DOC = """Do one thing.

Inputs: a file.
Exit status: 0 on success, 2 on bad input.
"""


def test_parser_from_doc_splits_summary_and_details() -> None:
    help_text = parser_from_doc(DOC).format_help()
    assert "Do one thing." in help_text
    assert "Inputs: a file.\nExit status: 0 on success, 2 on bad input." in help_text


def test_parser_from_doc_without_details() -> None:
    parser = parser_from_doc("Only a summary.")
    assert parser.description == "Only a summary."
    assert parser.epilog is None


def test_json_option_returns_the_value() -> None:
    assert json_option('{"a": 1}', "--settings") == {"a": 1}
    assert json_option('["x", "y"]', "--command", list) == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("{not json", dict, "--opt: not valid JSON"),
        ("[1, 2]", dict, "--opt: must be a JSON dict"),
        ('{"a": 1}', list, "--opt: must be a JSON list"),
    ],
)
def test_json_option_names_the_option(text: str, kind: type, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        json_option(text, "--opt", kind)


def test_run_cli_turns_pipeline_error_into_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: object) -> int:
        json_option("{", "--settings")
        return 0

    assert run_cli(main, []) == 2
    assert "error: --settings: not valid JSON" in capsys.readouterr().err


# --- every script follows the one pattern -----------------------------------------------------

SCRIPTS = sorted((REPO / "scripts").glob("*.py"))


def calls(tree: ast.AST) -> list[str]:
    """The dotted names of every call in ``tree`` (``argparse.ArgumentParser``, ...)."""
    return [ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_uses_parser_from_doc_and_run_cli(script: Path) -> None:
    """One pattern: --help is the docstring (parser_from_doc) and errors are a message and an
    exit status (run_cli), never a traceback."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{script.name}: no docstring for --help"
    found = calls(tree)
    assert "parser_from_doc" in found, f"{script.name}: build the parser with parser_from_doc"
    assert not [c for c in found if c.endswith("ArgumentParser")], (
        f"{script.name}: builds its own argparse.ArgumentParser; use parser_from_doc(__doc__)"
    )
    (doc_arg,) = [
        node.args[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "parser_from_doc"
    ]
    assert ast.unparse(doc_arg) == "__doc__", f"{script.name}: parser_from_doc(__doc__)"
    main_guard = tree.body[-1]
    assert isinstance(main_guard, ast.If) and ast.unparse(main_guard.test) == (
        "__name__ == '__main__'"
    ), f"{script.name}: ends without an `if __name__ == '__main__':` block"
    assert [ast.unparse(statement) for statement in main_guard.body] == [
        "raise SystemExit(run_cli(main))"
    ], f"{script.name}: its main block must be `raise SystemExit(run_cli(main))`"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_help_shows_its_docstring(script: Path) -> None:
    result = run_script(script.name, ["--help"], timeout=120)
    assert result.returncode == 0, result.stderr
    summary = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))).splitlines()[0]
    assert summary in result.stdout, f"{script.name} --help lacks its docstring's {summary!r}"
