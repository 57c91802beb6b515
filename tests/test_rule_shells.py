"""The rules' shell strings hold no logic (README: "no logic in shell strings"): each starts a
script or a prepared command and redirects its log; conditions, loops, substitutions and
arithmetic belong in a script or a tested function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.paths import REPO

RULE_FILES = [*sorted((REPO / "rules").glob("*.smk")), REPO / "Snakefile"]
#: Shell syntax that makes a string a program: keywords, sequencing that ignores a failure,
#: command substitution, arithmetic, backticks, subshells.
LOGIC = re.compile(
    r"\b(?:if|then|else|elif|fi|for|while|until|do|done|case|esac)\b|;|\$\(|`|\|\||(?<![\w{])\("
)


def shell_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every ``shell:`` directive: its adjacent string literals joined."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for number, line in enumerate(lines):
        if line.strip() != "shell:":
            continue
        literals = []
        for following in lines[number + 1 :]:
            stripped = following.strip()
            if not stripped or stripped[0] not in "\"'":
                break
            literals.append(stripped)
        found.append((number + 1, ast.literal_eval("".join(literals))))
    return found


SHELLS = [(path, line, text) for path in RULE_FILES for line, text in shell_strings(path)]


def test_every_rule_file_is_read() -> None:
    assert len(SHELLS) >= 15, SHELLS  # one per shell rule: a parser that finds none fails


@pytest.mark.parametrize(
    ("path", "line", "text"), SHELLS, ids=[f"{p.name}:{n}" for p, n, _ in SHELLS]
)
def test_shell_strings_hold_no_logic(path: Path, line: int, text: str) -> None:
    match = LOGIC.search(text)
    assert match is None, (
        f"{path.relative_to(REPO)}:{line}: {match.group(0)!r} in the shell string {text!r}: "
        "move the logic into a script or a tested function"
    )


def test_the_check_sees_logic() -> None:
    old = "mkdir -p x; if [ -f {params.summary:q} ]; then mv a b.$(date +%s); fi; cmd >> {log}"
    assert LOGIC.search(old)
    assert not LOGIC.search("python scripts/x.py --out {output:q} > {log} 2>&1 && {params.c}")
