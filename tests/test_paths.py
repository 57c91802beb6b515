"""The results/ layout is spelled once: workflow/paths.py (NVIDIA's folders: nvidia/command.py)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from maskrcnn_pipeline.workflow import paths
from tests.support.paths import REPO

#: Every path function of workflow/paths.py: called with names, and as a wildcard pattern.
FUNCTIONS = [
    function
    for _, function in inspect.getmembers(paths, inspect.isfunction)
    if function.__module__ == paths.__name__
]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda function: function.__name__)
def test_a_path_is_its_pattern_with_the_names_filled_in(function) -> None:
    parameters = inspect.signature(function).parameters.values()
    fixed = {p.name: "file.json" for p in parameters if p.default is inspect.Parameter.empty}
    wildcards = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    pattern = function(**fixed)
    assert pattern.startswith(f"{paths.RESULTS}/")
    names = {name: f"name{i}" for i, name in enumerate(wildcards)}
    filled = pattern.format(**{wildcards[name].strip("{}"): names[name] for name in wildcards})
    assert filled == function(**fixed, **names)


def code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def test_no_rule_file_spells_a_results_path_but_its_log_and_benchmark() -> None:
    files = [REPO / "Snakefile", *sorted((REPO / "rules").rglob("*.smk"))]
    offending = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in files
        for line in code_lines(path.read_text())
        if "results/" in line and not re.search(r'"results/(logs|benchmarks)/', line)
    ]
    assert offending == []


def string_literals(path: Path) -> list[str]:
    """The strings in a module's code, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_other_workflow_module_spells_results() -> None:
    folder = REPO / "maskrcnn_pipeline" / "workflow"
    offending = [
        f"{path.name}: {text!r}"
        for path in sorted(folder.glob("*.py"))
        if path.name != "paths.py"
        for text in string_literals(path)
        if "results/" in text
    ]
    assert offending == []
