"""Every read and edit of an ONNX graph: loading, layers, activations, shapes, edits.

Nothing here imports onnxruntime; everything works on ``onnx`` protos. Modules:

- :mod:`.index`: execution order, consumers, constants (with folding), fresh names, the opset;
- :mod:`.load`: safe loading and the loaded :class:`ModelGraph` (read-only; edits copy);
- :mod:`.layers`: the convolution layers, selection by pattern;
- :mod:`.activations`: from a convolution to its activation (the ``post`` stage);
- :mod:`.shapes`: shape inference on a weightless copy;
- :mod:`.edits`, :mod:`.reductions`, :mod:`.controlflow`: edited copies for onnxruntime;
- :mod:`.timeaxis`: where a 1-D layer's steps sit on the input's time axis.
"""

from .layers import CONV_OPS, STAGES, Layer, UnreachableLayer, select_layers
from .load import ModelGraph, ModelInput, analyse, load_model

__all__ = [
    "CONV_OPS",
    "STAGES",
    "Layer",
    "ModelGraph",
    "ModelInput",
    "UnreachableLayer",
    "analyse",
    "load_model",
    "select_layers",
]
