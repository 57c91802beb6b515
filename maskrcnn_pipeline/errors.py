"""The exception type the project raises for problems a user can fix (and its data kind).

Every message names the file, key or line at fault and what to do about it; the CLIs print
it without a traceback (see :mod:`maskrcnn_pipeline.cli`), so it must stand on its own.
"""


class PipelineError(Exception):
    """A problem with the user's input, config or environment, explained in its message."""


class DataError(PipelineError):
    """A file of the dataset cannot be used (an unreadable or truncated image): the same job
    run again fails the same way, so training does not retry it (train/data_error.py).

    ``path`` names the file when known. A DataLoader worker's error reaches the training
    process re-created from its formatted traceback (torch's ExceptionWrapper), hence the
    message-only constructor: :func:`original_message` recovers the text.
    """

    def __init__(self, message: str, *, path: object = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


def original_message(error: BaseException) -> str:
    """An error's own message, without what a DataLoader worker wrapped around it.

    torch re-raises a worker's exception as ``type("Caught <name> in DataLoader worker ...
    Original Traceback ... <module>.<name>: <message>")``; the message is what follows the
    last ``<module>.<name>: `` line start.
    """
    text = str(error)
    name = f"{type(error).__module__}.{type(error).__qualname__}: "
    if "DataLoader worker" in text and f"\n{name}" in text:
        return text.rsplit(f"\n{name}", 1)[1].strip()
    return text
