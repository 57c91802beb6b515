"""What every script in scripts/ shares: logging set-up and turning PipelineError into a
clean message and a non-zero exit code, so that users see the fix, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maskrcnn_pipeline.errors import PipelineError
from maskrcnn_pipeline.fileio import write_json_atomic

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr, which the rules redirect into their ``log:`` files."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


#: Set by Slurm and Apptainer: where a job ran and which GPUs it was given.
JOB_CONTEXT_VARIABLES = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "APPTAINER_CONTAINER")


def log_job_context() -> None:
    """One line in the job's log saying what the scheduler and container gave it.

    On a cluster this is the first thing to read when a job is slow or sees no GPU; only the
    variables that are set are shown.
    """
    context = [f"{name}={os.environ[name]}" for name in JOB_CONTEXT_VARIABLES if name in os.environ]
    if context:
        logging.getLogger("job").info("%s", " ".join(context))


def parser_from_doc(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help is the script's docstring: its first paragraph as the
    description, the rest (inputs, outputs, exit status) verbatim as the epilog, so the
    script documents itself in one place."""
    summary, _, details = (doc or "").partition("\n\n")
    return argparse.ArgumentParser(
        description=summary,
        epilog=details or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_split_option(parser: Any, *, help: str, required: bool = True) -> None:
    """``--split NAME DIR FILE``, repeated: how the rules pass a dataset's splits (common.smk
    split_args), the same for every script that takes them."""
    parser.add_argument(
        "--split",
        nargs=3,
        action="append",
        required=required,
        default=None if required else [],
        metavar=("NAME", "DIR", "FILE"),
        help=help,
    )


def json_option(text: str, option: str, kind: type = dict) -> Any:
    """The value of a JSON command-line option (the rules pass settings and commands as
    JSON), or a PipelineError naming the option, instead of a traceback from json."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{option}: not valid JSON ({exc})") from exc
    if not isinstance(value, kind):
        raise PipelineError(f"{option}: must be a JSON {kind.__name__}")
    return value


def emit_figures(figures: dict[str, Any], out: Path | None) -> None:
    """A benchmark's result as the last line of stdout (one JSON object, what bench/ scripts
    and people parse) and, when asked, also as a file a rule can declare as its output."""
    if out:
        write_json_atomic(out, figures)
    print(json.dumps(figures))


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a script's ``main`` and map a PipelineError to its message and exit code 2 (or
    the error's own ``exit_code``, e.g. 128 + signal for an interrupted training)."""
    setup_logging()
    log_job_context()
    try:
        code = main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
