"""What every script in scripts/ shares: logging set-up and turning PipelineError into a
clean message and a non-zero exit code, so that users see the fix, not a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from maskrcnn_pipeline.errors import PipelineError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr, which the rules redirect into their ``log:`` files."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a script's ``main`` and map a PipelineError to its message and exit code 2 (or
    the error's own ``exit_code``, e.g. 128 + signal for an interrupted training)."""
    setup_logging()
    try:
        code = main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
