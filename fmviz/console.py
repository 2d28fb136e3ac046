"""Terminal output with rich: tables for people (JSON output never goes through here)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def make_console(stderr: bool = False) -> Console:
    """A console that is not squeezed to 80 columns when output goes to a file or a pipe."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 200))
    return console


def _shape(shape) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def print_layers(document: dict, console: Console | None = None) -> None:
    """The ``fmviz layers`` table, then the layers that cannot be exposed."""
    console = console or make_console()
    model = document["model"]
    inputs = ", ".join(f"{i['name']} {_shape(i['shape'])} {i['dtype']}" for i in model["inputs"])
    # model-supplied names and shapes contain [ ]: escape them so rich does not read markup
    console.print(
        f"[bold]{escape(model['path'])}[/]  opset {model['opset']}  inputs: {escape(inputs)}"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("#", "name", "op", "kernel", "stride", "groups", "channels", "activation",
                   f"tensor ({document['stage']})", "shape"):
        table.add_column(column, overflow="fold", no_wrap=column not in ("name", "tensor"))
    for layer in document["layers"]:
        table.add_row(
            str(layer["index"]),
            escape(layer["name"]),
            layer["op"],
            "x".join(map(str, layer["kernel"])) if layer["kernel"] else "?",
            "x".join(map(str, layer["stride"])) if layer["stride"] else "?",
            str(layer["groups"]),
            str(layer["channels"]) if layer["channels"] is not None else "?",
            layer["activation"] or "-",
            escape(layer["tensor"]),
            escape(_shape(layer["shape"])),
        )
    console.print(table)
    console.print(f"{len(document['layers'])} layers")
    unreachable = document.get("unreachable") or []
    if unreachable:
        console.print(
            f"[yellow]{len(unreachable)} convolution(s) inside control flow cannot be exposed:[/]"
        )
        for item in unreachable:
            console.print(
                escape(
                    f"  {item['name']} ({item['op']}) in {item['parent_op']} {item['parent']!r} "
                    f"{item['subgraph']}"
                )
            )
