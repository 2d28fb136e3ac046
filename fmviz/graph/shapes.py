"""Shape inference, run on a copy of the model without its weights.

onnx's inference copies the whole model it is given, so on a 100 MB model running it on the
weightless copy takes it from about half a second to milliseconds. :func:`infer_shapes` runs once
per loaded model (declared shapes); :func:`infer_concrete_shapes` once per input size, for the
memory planner, where the model's sizes depend on the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

Shape = tuple[int | str | None, ...]


@dataclass(frozen=True)
class ShapeInfo:
    """Shapes (int, symbolic str or None per dim) and ONNX element types of the tensors that
    shape inference could reach."""

    shapes: dict[str, Shape]
    elem_types: dict[str, int]


_SMALL_INITIALIZER = 1024  # elements: shape/axes/scale constants, kept for shape inference


def weightless_copy(
    proto: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> onnx.ModelProto:
    """A copy of ``proto`` for shape inference, without its weights.

    Float (and other large) initializers become typed graph inputs of the same shape; small
    ones (the shape, axes and scale constants whose values Reshape, Slice and Resize need) are
    kept. onnx's inference copies the whole model it is given, so on a 100 MB model this takes
    it from about half a second to milliseconds. ``input_shapes`` replaces declared input
    shapes (concrete feeds); without it the declared inputs, outputs and value_info are kept.
    """
    from onnx import helper

    source = proto.graph
    model = onnx.ModelProto()
    model.ir_version = proto.ir_version
    model.opset_import.extend(proto.opset_import)
    model.functions.extend(proto.functions)
    graph = model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    initializers = {t.name for t in source.initializer}
    for info in source.input:
        if info.name in initializers:
            continue
        shape = input_shapes.get(info.name) if input_shapes is not None else None
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
        if shape is not None and elem:
            graph.input.append(helper.make_tensor_value_info(info.name, elem, list(shape)))
        else:
            graph.input.append(info)
    for tensor in source.initializer:
        if int(np.prod(tensor.dims, dtype=np.int64)) <= _SMALL_INITIALIZER:
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    if input_shapes is None:
        graph.value_info.extend(source.value_info)
        graph.output.extend(source.output)
    else:  # declared output shapes may disagree with the feeds' (a fixed export size)
        for info in source.output:
            elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
            graph.output.append(helper.make_tensor_value_info(info.name, elem, None))
    return model


def infer_shapes(proto: onnx.ModelProto) -> ShapeInfo:
    """Shapes and element types of every tensor shape inference can reach (declared ones only
    where it fails)."""
    shapes: dict[str, Shape] = {}
    elem_types: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(
            weightless_copy(proto), strict_mode=False, data_prop=True
        )
        graph = inferred.graph
    except Exception:  # inference is a nicety: models it cannot handle still run
        graph = proto.graph
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = shape_of(info.type)
        if shape is not None:
            shapes[info.name] = shape
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            elem_types[info.name] = info.type.tensor_type.elem_type
    return ShapeInfo(shapes, elem_types)


def shape_of(type_proto: onnx.TypeProto) -> Shape | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in type_proto.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)



def infer_concrete_shapes(
    proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> dict[str, tuple[tuple | None, int, int]]:
    """Shape, item size and ONNX element type of every tensor, from shape inference with the
    feeds' shapes (runs on :func:`weightless_copy`)."""
    from onnx import helper

    model = weightless_copy(proto, {name: np.shape(a) for name, a in feeds.items()})
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # inference is a nicety: the memory estimate falls back to a guess
        return {}
    shapes: dict[str, tuple[tuple | None, int, int]] = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        dims = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim
            )
        itemsize = 0
        if tensor_type.elem_type:
            try:
                itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
            except (KeyError, TypeError, ValueError):  # an element type numpy cannot hold
                itemsize = 0
        shapes[info.name] = (dims, itemsize, int(tensor_type.elem_type))
    return shapes
