"""Errors a user can act on.

Raise an :class:`FmvizError` (or a subclass) for anything caused by the user's model, input or
options: the CLI prints its message as one ``Error: ...`` line and exits 2. Any other exception
is a bug in fmviz and shows a traceback (only with ``--debug`` for the CLI).
"""


class FmvizError(Exception):
    """A problem the user can fix; its message names the file and what is wrong."""

    exit_code = 2


class ModelError(FmvizError):
    """The model file cannot be read or used."""


class InputError(FmvizError):
    """An input file (image, series, tensor) cannot be read or does not fit the model."""


class OptionError(FmvizError):
    """An option value is invalid (a pattern that matches nothing, an unknown provider, ...)."""


class OutputError(FmvizError):
    """An output cannot be written (not a folder, not writable, disk full)."""
