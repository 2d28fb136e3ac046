"""Errors a user can act on, in the library's own terms.

Raise an :class:`FmvizError` (or a subclass) for anything caused by the user's model, input or
options: the CLI prints its message as one ``Error: ...`` line and exits 2. Any other exception
is a bug in fmviz and shows a traceback (only with ``--debug`` for the CLI).

An :class:`OptionError` names the library parameter it is about (``max_memory``,
``patterns``, ...); :meth:`OptionError.for_cli` rewords it with the command-line flag.
"""

from __future__ import annotations

from collections.abc import Mapping


class FmvizError(Exception):
    """A problem the user can fix; its message names the file and what is wrong."""

    exit_code = 2

    def for_cli(self) -> str:
        """The message as the command line prints it (after ``Error: ``)."""
        return str(self)


class ModelError(FmvizError):
    """The model file cannot be read or used."""


class InputError(FmvizError):
    """An input file (image, series, tensor) cannot be read or does not fit the model."""


class RejectedInput(InputError):
    """onnxruntime refused to run the model on an input (a shape or type it cannot take).

    Only onnxruntime's own run-time errors become this; anything else raised while running
    (out of memory, a bug) propagates as it is.
    """


class OutputError(FmvizError):
    """An output cannot be written (not a folder, not writable, disk full)."""


# Library parameter -> command-line flag, where the flag is not simply --name-with-dashes.
_FLAGS = {"patterns": "--layers", "input_name": "--input", "providers": "--provider",
          "feeds": "--feed", "reports": "--report"}


class OptionError(FmvizError):
    """An option value is invalid (a pattern that matches nothing, an unknown provider, ...).

    ``OptionError("max_memory", "'4X' is not a size")`` reads ``max_memory '4X' is not a size``
    in the library and ``--max-memory '4X' is not a size`` on the command line.
    """

    def __init__(self, option: str | None, detail: str):
        self.option = option
        self.detail = detail
        super().__init__(f"{option} {detail}" if option else detail)

    def for_cli(self, flags: Mapping[str, str] | None = None) -> str:
        if not self.option:
            return self.detail
        flag = (flags or _FLAGS).get(self.option) or "--" + self.option.replace("_", "-")
        return f"{flag} {self.detail}"
