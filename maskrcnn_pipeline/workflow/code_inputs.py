"""The code a rule's job runs, derived from its script's imports: the rule's code inputs.

A rule reruns when a file it lists as input changes. Listing a script's modules by hand goes
stale the day someone adds an import, so the list is computed at parse time from the import
closure of the script: every ``maskrcnn_pipeline`` module the script can import, directly or
through other modules, at module level or inside a function (a lazy import still runs).
Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so those count too.

The analysis is static (:mod:`ast`, no import is executed), so the Snakefile never imports
torch. ``without`` names modules that a job does not import under its settings (training's
evaluation hook when ``eval_period`` is 0): they, and whatever only they import, are left
out, so editing them reruns nothing that cannot use them.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

#: The project's own package: its modules are code inputs; other imports are software
#: environment (the container or the venv), tracked by Snakemake's software-env trigger.
PACKAGE = "maskrcnn_pipeline"
#: Modules a script imports only when run by hand (``--config FILE --run NAME``): a rule's
#: job always gets its settings as JSON, so these are no code input of any rule.
BY_HAND_ONLY = frozenset({"maskrcnn_pipeline.workflow.config"})


def _module_file(root: Path, module: str) -> Path | None:
    """The file that defines ``module`` under ``root``, if it is one of the project's."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(root: Path, path: Path) -> str:
    """The dotted package a file's relative imports start from."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def _imported_names(root: Path, path: Path) -> Iterator[str]:
    """Every module name ``path`` imports, anywhere in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(root, path).split(".")
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            # `from package import module` imports a submodule, not only a name.
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _closure(root: Path, start: Path, without: frozenset[str]) -> tuple[str, ...]:
    seen: dict[str, Path] = {}
    pending = [start]
    while pending:
        path = pending.pop()
        for name in _imported_names(root, path):
            if name.split(".")[0] != PACKAGE:
                continue
            for module in _with_parents(name):
                if module in seen or module in without:
                    continue
                found = _module_file(root, module)
                if found is not None:
                    seen[module] = found
                    pending.append(found)
    files = sorted(path.relative_to(root).as_posix() for path in seen.values())
    return (start.relative_to(root).as_posix(), *files)


def code_inputs(root: str | Path, script: str, without: Collection[str] = ()) -> list[str]:
    """``script`` (relative to ``root``, the workflow's folder) and every project module its
    job can import, as paths relative to ``root``; ``without`` modules, the
    :data:`BY_HAND_ONLY` ones, and what only they import are left out."""
    root = Path(root).resolve()
    return list(_closure(root, root / script, BY_HAND_ONLY.union(without)))


def module_inputs(root: str | Path, module: str) -> list[str]:
    """The files of ``module`` and its import closure: the code of a rule that calls the
    package from Snakemake's own Python (``run:``) instead of a script."""
    root = Path(root).resolve()
    found = _module_file(root, module)
    if found is None:
        raise ValueError(f"{module}: no such module under {root}")
    packages = [_module_file(root, parent) for parent in _with_parents(module)[:-1]]
    files = {path.relative_to(root).as_posix() for path in packages if path is not None}
    return sorted(files.union(code_inputs(root, found.relative_to(root).as_posix())))


#: Training imports its evaluation hook (and through it inference and evaluation) only when
#: the run evaluates periodically (train/run.py: periodic_evaluation).
EVALUATION_HOOK = "maskrcnn_pipeline.train.evaluation_hook"


def train_code(root: str | Path, settings: Mapping[str, Any]) -> list[str]:
    """The training code of a run: without the evaluation hook's modules when eval_period
    is 0, so editing predict or evaluation never retrains a run that does not evaluate.

    One definition for the train rule's code inputs (rerun when they change) and the resume
    fingerprint scripts/train.py computes (a checkpoint of other code is not resumed)."""
    without = () if settings["eval_period"] else (EVALUATION_HOOK,)
    return code_inputs(root, "scripts/train.py", without)


def code_digest(root: str | Path, files: Iterable[str]) -> str:
    """sha256 over the names and contents of ``files`` (paths relative to ``root``)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = hashlib.sha256(Path(root, name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()
