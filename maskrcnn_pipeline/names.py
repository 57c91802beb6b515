"""The one rule for names that become paths: runs, datasets, splits, files, images.

A config's names end up as folders and file names (``results/<run>/``,
``data/<dataset>/<split>/``, ``data/downloads/<file>``), and Snakemake deletes the outputs of
a failed job: a split named ``..`` once made it remove ``data/`` itself. So a name is letters,
digits, ``_``, ``-`` and ``.``, and never starts with a dot (no ``.``, ``..``, hidden
names). The schema (schemas/config.schema.yaml, ``$defs.name``) and the Snakefile's
wildcard constraints use this pattern; a test keeps the schema's copy equal to it.
"""

from __future__ import annotations

import re

#: A safe name, as a regular expression without anchors (wildcard constraints add none).
SAFE_NAME = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
#: What a person is told when a name is refused.
SAFE_NAME_RULE = (
    "names become folders and files, so use letters, digits, '_', '-' and '.', "
    "not starting with '.' (no '.', '..' or hidden names)"
)

_SAFE = re.compile(SAFE_NAME)


def is_safe_name(name: str) -> bool:
    return _SAFE.fullmatch(name) is not None
