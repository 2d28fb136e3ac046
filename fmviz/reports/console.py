"""Terminal output with rich: tables for people (JSON output never goes through here)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.table import Table

from ..text import channel_ranges, format_shape, percent, visible


def escape(text) -> str:
    """Model- or file-supplied text for rich: control characters escaped (a name cannot clear
    the screen or fake a line), then rich markup escaped."""
    return _markup_escape(visible(text))


def make_console(stderr: bool = False) -> Console:
    """A console that is not squeezed to 80 columns when output goes to a file or a pipe."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=max(console.width, 200))
    return console


def print_layers(document: dict, console: Console | None = None) -> None:
    """The ``fmviz layers`` table, then the layers that cannot be exposed."""
    console = console or make_console()
    model = document["model"]
    inputs = ", ".join(
        f"{i['name']} {format_shape(i['shape'])} {i['dtype']}" for i in model["inputs"]
    )
    # model-supplied names and shapes contain [ ]: escape them so rich does not read markup
    console.print(
        f"[bold]{escape(model['path'])}[/]  opset {model['opset']}  inputs: {escape(inputs)}"
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ("#", "name", "op", "kernel", "stride", "groups", "channels", "activation",
               "field", "in stride", f"tensor ({document['stage']})", "shape")
    for column in columns:
        table.add_column(column, no_wrap=True)

    def dims(values) -> str:
        return "x".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    rows = []
    for layer in document["layers"]:
        field = layer.get("receptive_field")
        stride = layer.get("input_stride")
        rows.append((
            str(layer["index"]),
            escape(layer["name"]),
            escape(layer["op"]),
            "x".join(map(str, layer["kernel"])) if layer["kernel"] else "?",
            "x".join(map(str, layer["stride"])) if layer["stride"] else "?",
            str(layer["groups"]),
            str(layer["channels"]) if layer["channels"] is not None else "?",
            escape(layer["activation"] or "-"),
            dims(field) if field else "-",
            dims(stride) if stride else "-",
            escape(layer["tensor"]),
            escape(format_shape(layer["shape"])),
        ))
    for row in rows:
        table.add_row(*row)
    from rich.cells import cell_len
    from rich.text import Text

    widths = [max([cell_len(c) for c in columns[i:i + 1]]
                  + [cell_len(Text.from_markup(row[i]).plain) for row in rows])
              for i in range(len(columns))]
    if sum(widths) + 2 * (len(columns) - 1) > console.width:
        _print_layers_narrow(console, rows, document["stage"])
        console.print(f"{len(document['layers'])} layers")
    else:
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


def _print_layers_narrow(console: Console, rows: list[tuple], stage: str) -> None:
    """The layer table for a terminal too narrow for one line per layer: per layer, its
    index, name, op, channels and activation first (never cut: a long name wraps), then the
    kernel, strides and field, then the tensor and shape on an indented line of their own."""
    console.print(f"[bold]#  name  op  channels  activation[/]  kernel stride groups\n"
                  f"   field  in-stride  tensor ({stage})  shape")
    for (index, name, op, kernel, stride, groups, channels, activation, field, in_stride,
         tensor, shape) in rows:
        console.print(f"[bold]{index}  {name}[/]  {op}  {channels}ch  {activation}  "
                      f"k{kernel} s{stride} g{groups}")
        console.print(f"   field {field}  in-stride {in_stride}  {tensor}  {shape}",
                      style="dim")


def print_dead_filters(report: dict, console: Console | None = None, top: int = 10) -> None:
    """The ``fmviz dead-filters`` summary: totals, then the layers with most dead/rare channels."""
    from .deadfilters import ranked_layers

    console = console or make_console()
    summary = report["summary"]
    model = report["model"]
    console.print(
        f"[bold]{escape(str(model.get('path', '')))}[/]  stage {report.get('stage', 'post')}  "
        f"eps {report['eps']:g}  rare < {report['rare']:g}  "
        f"({escape(', '.join(report['providers']))})"
    )
    dead_style = "bold red" if summary["dead"] else "green"
    console.print(
        f"{report['inputs_scanned']} inputs scanned, {len(report['skipped'])} skipped  "
        f"[{dead_style}]{summary['dead']} dead[/] of {summary['channels']} channels "
        f"({percent(summary['dead'], summary['channels'])}) in {summary['layers']} layers, "
        f"[blue]{summary.get('inactive', 0)} inactive[/], "
        f"[yellow]{summary['rare']} rare[/], {summary['constant']} constant"
    )
    ranked = ranked_layers(report)
    if ranked:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("#", "layer", "activation", "channels", "dead", "inactive", "rare",
                       "constant", "dead channels"):
            table.add_column(column, overflow="fold")
        for layer in ranked[:top]:
            table.add_row(
                str(layer["index"]),
                escape(layer["name"]),
                escape(layer["activation"] or "-"),
                str(layer["channels"]),
                str(len(layer["dead"])),
                str(len(layer.get("inactive", []))),
                str(len(layer["rare"])),
                str(len(layer["constant"])),
                escape(channel_ranges(layer["dead"], limit=12)),
            )
        console.print(table)
        if len(ranked) > top:
            console.print(f"... and {len(ranked) - top} more layers with dead, rare or constant "
                          "channels (--report out.md lists them all)")
    skipped = report["skipped"]
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} input(s):[/]")
        for item in skipped[:5]:
            console.print(f"  {escape(item['path'])}: {escape(item['error'])}")
        if len(skipped) > 5:
            console.print(f"  ... and {len(skipped) - 5} more (listed in the report)")


class ScanProgress:
    """A rich progress bar on stderr (inputs done, rate, ETA); a no-op when disabled.

    Use as a context manager; call the instance with ``(done, total)``.
    """

    def __init__(self, enabled: bool, description: str = "scanning"):
        self.enabled = enabled
        self.description = description
        self._progress: Any = None  # a rich Progress while enabled
        self._task: Any = None

    def __enter__(self) -> ScanProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                # shown because stderr is a terminal or --progress asked for it
                console=Console(stderr=True, force_terminal=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=None, rate="")
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        if task.total is None:  # the first call: inputs resumed from a checkpoint are not timed
            self._progress.reset(self._task, total=total, completed=done, rate="")
            return
        speed = task.speed
        rate = f"{speed:.1f} inputs/s" if speed else ""
        self._progress.update(self._task, completed=done, rate=rate)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
