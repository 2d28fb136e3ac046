"""Activation following: from a convolution's output to the activation that reads it.

``post`` is the activation a = f(z) of a convolution's output z: from z, follow the chain of
single-consumer, per-channel affine steps (BatchNormalization, Identity, Add/Sub/Mul/Div by a
constant) to one activation op, or to a decomposed one (SiLU ``x*Sigmoid(x)``, hard-swish,
Mish, GELU with Erf). A constant is anything :class:`~fmviz.graph.index.GraphIndex` can fold,
so a bias written as ``Add(z, Reshape(Constant, Constant))`` is recognised too.
"""

from __future__ import annotations

import onnx

from .index import GraphIndex

ACTIVATION_OPS = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "Tanh",
        "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Gelu", "Mish",
    }
)

# Activations whose output is never negative: |a| = a.
NON_NEGATIVE = frozenset({"Relu", "ReLU6", "Sigmoid", "HardSigmoid", "Softplus"})
# Activations that map every non-positive input to a value <= 0 (their "rest" is at or below
# zero): a channel whose pre-activation never exceeds 0 never fires, although its output is a
# small negative number rather than 0 (SPEC: "inactive").
RESTS_AT_OR_BELOW_ZERO = frozenset(
    {"Relu", "ReLU6", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "SiLU", "Swish", "HardSwish",
     "Gelu", "Mish"}
)


# Decomposed activations: the op types along the "gate" branch of x * gate(x), in order.
# The optional trailing constant Mul/Div after the join (the /6 of hard-swish, the *0.5 of GELU)
# is absorbed by _match_gated.
_GATE_PATTERNS: dict[tuple[str, ...], str] = {
    ("Sigmoid",): "SiLU",
    ("Mul", "Sigmoid"): "Swish",  # x * sigmoid(beta * x)
    ("HardSigmoid",): "HardSwish",
    ("Add", "Clip"): "HardSwish",
    ("Add", "Clip", "Div"): "HardSwish",
    ("Add", "Clip", "Mul"): "HardSwish",
    ("Softplus", "Tanh"): "Mish",
    ("Div", "Erf", "Add"): "Gelu",
    ("Mul", "Erf", "Add"): "Gelu",
    ("Div", "Erf", "Add", "Mul"): "Gelu",
    ("Mul", "Erf", "Add", "Mul"): "Gelu",
}
_ABSORB_AFTER = frozenset({"HardSwish", "Gelu"})


def follow_activation(
    tensor: str,
    index: GraphIndex,
    channels: int | None = None,
    spatial_rank: int | None = None,
) -> tuple[str, str | None]:
    """From a conv output, follow per-channel affine steps to one activation.

    Returns the activation's output tensor and its name, or the end of the affine chain and
    ``None`` when no activation follows.
    """
    current = tensor
    for _ in range(64):  # affine chains are short; the bound guards against odd graphs
        users = index.users(current)
        gated = _match_gated(current, users, index)
        if gated is not None:
            return gated
        if len(users) != 1:
            return current, None
        node = users[0]
        if node.op_type in ACTIVATION_OPS and node.input and node.input[0] == current:
            return node.output[0], _activation_name(node, index)
        if _is_affine_step(node, current, index, channels, spatial_rank):
            current = node.output[0]
            continue
        return current, None
    return current, None


def _is_affine_step(
    node: onnx.NodeProto,
    tensor: str,
    index: GraphIndex,
    channels: int | None,
    spatial_rank: int | None = None,
) -> bool:
    if not node.output or not node.output[0]:
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type == "BatchNormalization":
        return node.input[0] == tensor
    if node.op_type in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2:
        a, b = node.input
        if node.op_type == "Div" and a != tensor:
            return False  # c / x is not affine in x
        other = b if a == tensor else a
        if other == tensor or not index.is_constant(other):
            return False
        value = index.constant(other)
        if value is None:
            return False
        # per-channel: a scalar, or one value per channel laid along axis 1
        return value.size == 1 or _broadcasts_per_channel(value.shape, channels, spatial_rank)
    return False


def _broadcasts_per_channel(
    shape: tuple[int, ...], channels: int | None, spatial_rank: int | None
) -> bool:
    """True when a constant of ``shape`` lines up with axis 1 of an [N, C, *spatial] map.

    Broadcasting aligns shapes from the right, so a ``[C]`` constant would scale the last
    spatial axis, not the channels: it must be ``[C, 1, 1]`` (or ``[1, C, 1, 1]``) for 2-D maps.
    """
    if channels is None or spatial_rank is None:
        return False
    dims = list(shape)
    while dims and dims[0] == 1 and len(dims) > spatial_rank + 1:
        dims.pop(0)  # leading 1s (the batch axis) do not matter
    return dims == [channels] + [1] * spatial_rank


def _activation_name(node: onnx.NodeProto, index: GraphIndex) -> str:
    if node.op_type == "Clip":
        low, high = _clip_bounds(node, index)
        if low == 0 and high == 6:
            return "ReLU6"
    return node.op_type


def _clip_bounds(node: onnx.NodeProto, index: GraphIndex) -> tuple[float | None, float | None]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "min" in attrs or "max" in attrs:  # opset < 11
        return attrs.get("min"), attrs.get("max")
    bounds: list[float | None] = []
    for position in (1, 2):
        value = None
        if len(node.input) > position and node.input[position]:
            array = index.constant(node.input[position])
            value = float(array.reshape(-1)[0]) if array is not None and array.size else None
        bounds.append(value)
    return bounds[0], bounds[1]


def _match_gated(
    tensor: str, users: list[onnx.NodeProto], index: GraphIndex
) -> tuple[str, str] | None:
    """Recognise ``x * gate(x)`` (SiLU, hard-swish, Mish, GELU with Erf) starting at ``tensor``."""
    if len(users) != 2:
        return None
    first, second = (_branch_to_join(tensor, user, index) for user in users)
    if first is None or second is None:
        return None
    (ops_a, join_a), (ops_b, join_b) = first, second
    if join_a is not join_b or join_a.op_type != "Mul":
        return None
    # one branch is x itself (possibly scaled, e.g. x * 0.5 in GELU), the other the gate
    gate_ops, identity_ops = (ops_a, ops_b) if len(ops_a) >= len(ops_b) else (ops_b, ops_a)
    if identity_ops not in ((), ("Mul",), ("Div",)):
        return None
    name = _GATE_PATTERNS.get(gate_ops)
    if name is None:
        return None
    out = join_a.output[0]
    if name in _ABSORB_AFTER and not identity_ops and gate_ops[-1] not in ("Div", "Mul"):
        following = index.users(out)
        if len(following) == 1 and len(following[0].input) == 2:
            step = following[0]
            first, second = step.input
            if (step.op_type == "Div" and first == out and index.is_constant(second)) or (
                step.op_type == "Mul"  # 0.5 * y is as common as y * 0.5
                and out in (first, second)
                and index.is_constant(second if first == out else first)
            ):
                out = step.output[0]
    return out, name


def _branch_to_join(
    tensor: str, first: onnx.NodeProto, index: GraphIndex
) -> tuple[tuple[str, ...], onnx.NodeProto] | None:
    """Follow a chain of single-input steps from ``tensor`` through ``first`` to a binary join.

    The join is the first node whose inputs are two non-constant tensors. Returns the op types
    walked before the join and the join node, or None if the chain branches or leaves the
    pattern.
    """
    ops: list[str] = []
    node, current = first, tensor
    for _ in range(8):
        variable_inputs = [n for n in node.input if n and not index.is_constant(n)]
        if len(variable_inputs) == 2 and current in variable_inputs:
            return tuple(ops), node
        if variable_inputs != [current] or not node.output:
            return None
        ops.append(node.op_type)
        current = node.output[0]
        following = index.users(current)
        if len(following) != 1:
            return None
        node = following[0]
    return None


