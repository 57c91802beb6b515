"""The one exception type the project raises for problems a user can fix.

Every message names the file, key or line at fault and what to do about it; the CLIs print
it without a traceback (see :mod:`maskrcnn_pipeline.cli`), so it must stand on its own.
"""


class PipelineError(Exception):
    """A problem with the user's input, config or environment, explained in its message."""
