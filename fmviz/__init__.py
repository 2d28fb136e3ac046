"""fmviz: see what each channel of a convolutional network responds to.

The public API is small: :func:`open_model` gives a :class:`Model` whose ``capture`` runs an
input and returns its feature maps; :mod:`fmviz.render` turns maps into pictures. Names are
imported on first use, so ``import fmviz`` (and ``fmviz --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "open_model": "fmviz.model",
    "Model": "fmviz.model",
    "Capture": "fmviz.runner",
    "Runner": "fmviz.runner",
    "Probe": "fmviz.probes",
    "Scanner": "fmviz.scan",
    "ScanOptions": "fmviz.scan",
    "ScanPartial": "fmviz.scan",
    "Layer": "fmviz.graph",
    "InputOptions": "fmviz.inputs",
    "FmvizError": "fmviz.errors",
    "ModelError": "fmviz.errors",
    "InputError": "fmviz.errors",
    "OptionError": "fmviz.errors",
    "OutputError": "fmviz.errors",
    "RejectedInput": "fmviz.errors",
    "render": "fmviz.render",
}
__all__ = [
    "__version__",
    "open_model",
    "Model",
    "Capture",
    "Runner",
    "Probe",
    "Scanner",
    "ScanOptions",
    "ScanPartial",
    "Layer",
    "InputOptions",
    "FmvizError",
    "ModelError",
    "InputError",
    "OptionError",
    "OutputError",
    "RejectedInput",
    "render",
]

if TYPE_CHECKING:  # pragma: no cover
    from . import render
    from .errors import (
        FmvizError,
        InputError,
        ModelError,
        OptionError,
        OutputError,
        RejectedInput,
    )
    from .graph import Layer
    from .inputs import InputOptions
    from .model import Model, open_model
    from .probes import Probe
    from .runner import Capture, Runner
    from .scan import Scanner, ScanOptions, ScanPartial


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fmviz' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "render" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
