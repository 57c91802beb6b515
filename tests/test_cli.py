"""The helpers every script shares: self-documenting --help and JSON options that fail with
the option's name."""

from __future__ import annotations

import pytest

from maskrcnn_pipeline.cli import json_option, parser_from_doc, run_cli
from maskrcnn_pipeline.errors import PipelineError

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
