"""The README's table of fixes per kind of validation problem, generated from the one mapping
in maskrcnn_pipeline/data/validation/problems.py (ERRORS, WARNINGS, FIXES), so the README
cannot drift from what the validator says. tests/test_prepare.py fails when it is stale;
after editing the mapping:

    python -m tests.support.fixes_table --write      # rewrites the README section
"""

from __future__ import annotations

import argparse

from maskrcnn_pipeline.data.validation.problems import fixes_table
from tests.support.reruns import README

BEGIN = (
    "<!-- table of fixes: generated from maskrcnn_pipeline/data/validation/problems.py by "
    "`python -m tests.support.fixes_table --write` -->"
)
END = "<!-- end of the table of fixes -->"


def readme_table() -> str:
    """The table as the README has it now."""
    text = README.read_text(encoding="utf-8")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write() -> None:
    text = README.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{BEGIN}\n{fixes_table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README section")
    if parser.parse_args().write:
        write()
    else:
        print(fixes_table())
