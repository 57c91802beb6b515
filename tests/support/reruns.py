"""The rerun table (tests/data/reruns.yaml): what each change reruns, for the tests and the README.

tests/test_workflow.py makes each row's change on the finished tiny pipeline and compares the
rules `snakemake --dry-run` plans with the row; this module also renders the README's "What
triggers a rerun" table from the same rows, so the README cannot claim what the test does not
check. After editing the YAML:

    python -m tests.support.reruns --write      # rewrites the README section
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "tests" / "data" / "reruns.yaml"
README = REPO / "README.md"
#: The tiny pipeline's names that the table's keys write as placeholders.
PLACEHOLDERS = {"<run>": "tiny", "<dataset>": "tiny", "<name>": "sample"}
BEGIN = (
    "<!-- rerun table: generated from tests/data/reruns.yaml by "
    "`python -m tests.support.reruns --write`; checked by tests/test_workflow.py -->"
)
END = "<!-- end of the rerun table -->"


@cache
def load(path: Path = TABLE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def row_id(row: Mapping[str, Any]) -> str:
    return row.get("config") or row["edit"]


def key_path(row: Mapping[str, Any]) -> list[str]:
    """The row's config key in the tiny config, placeholders filled in."""
    key = row["config"]
    for placeholder, name in PLACEHOLDERS.items():
        key = key.replace(placeholder, name)
    return key.split(".")


def apply(row: Mapping[str, Any], workdir: Path) -> None:
    """Make the row's change in a copy of the workflow: set the key, or edit the file."""
    if "edit" in row:
        path = workdir / row["edit"]
        path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        return
    config_path = workdir / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    *parents, leaf = key_path(row)
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = row["value"]
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")


def _rules_text(rules: list[str], order: list[str]) -> str:
    if not rules:
        return "nothing"
    if set(rules) == set(order):
        return "everything"
    return ", ".join(rule for rule in order if rule in rules)


def render(table: Mapping[str, Any] | None = None) -> str:
    """The README's table: a row without a ``why`` that reruns the same rules as the line
    above joins that line."""
    table = table or load()
    lines: list[list[Any]] = []
    for row in table["rows"]:
        change = f"`{row_id(row)}`"
        if "why" in row or not lines or lines[-1][1] != row["reruns"]:
            lines.append([[change], row["reruns"], row.get("why", "")])
        else:
            lines[-1][0].append(change)
    out = ["| you change | reruns | why |", "| --- | --- | --- |"]
    for changes, rules, why in lines:
        out.append(f"| {', '.join(changes)} | {_rules_text(rules, table['rules'])} | {why} |")
    return "\n".join([BEGIN, *out, END])


def readme_section(text: str) -> str:
    """The generated part of the README (markers included), or "" when it has none."""
    start, end = text.find(BEGIN), text.find(END)
    return text[start : end + len(END)] if start >= 0 and end > start else ""


def write_readme(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    section = readme_section(text)
    if not section:
        raise SystemExit(f"{path}: no rerun table markers ({BEGIN!r} ... {END!r})")
    path.write_text(text.replace(section, render()), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README's table")
    args = parser.parse_args()
    if args.write:
        write_readme()
    else:
        print(render())


if __name__ == "__main__":
    main()
