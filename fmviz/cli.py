"""The ``fmviz`` command line: parse, call the library, print, map errors to exit codes.

This is the only module that imports click, and the one place where an :class:`FmvizError`
becomes an ``Error: ...`` line. Heavy libraries (onnxruntime, matplotlib) are imported by the
library only when a command needs them, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import FmvizError
from .text import visible

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


# ----------------------------------------------------------------------------- parameter types


class SizeType(click.ParamType):
    """``N`` (a square) or ``WxH``, as ImageMagick writes sizes."""

    name = "SIZE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).lower().strip()
        try:
            if "x" in text:
                width, height = (int(part) for part in text.split("x", 1))
            else:
                width = height = int(text)
        except ValueError:
            self.fail(f"{value!r} is not a size (N or WxH, e.g. 224 or 640x480)", param, ctx)
        if width < 1 or height < 1 or width > 65535 or height > 65535:
            self.fail(f"{value!r}: width and height must be between 1 and 65535", param, ctx)
        return (width, height)


class FloatListType(click.ParamType):
    """A comma-separated list of numbers: one value, or one per channel."""

    name = "LIST"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        if not all(n == n and abs(n) != float("inf") for n in numbers):
            self.fail(f"{value!r}: values must be finite numbers", param, ctx)
        return numbers


class FeedType(click.ParamType):
    """``NAME=FILE.npy`` or ``NAME=NUMBER`` for a model input other than the primary one."""

    name = "NAME=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, sep, rest = str(value).partition("=")
        if not sep or not name or not rest:
            self.fail(f"{value!r} is not NAME=FILE.npy or NAME=NUMBER", param, ctx)
        return (name, rest)


# ----------------------------------------------------------------------------- shared options


def _compose(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


# Declared on every command so click accepts it anywhere; main() reads it from argv, because
# it must decide how to report errors raised before (or while) click parses anything.
debug_option = click.option("--debug", is_flag=True, help="Show a traceback for errors.")

stage_option = click.option(
    "--stage",
    type=click.Choice(["post", "pre"]),
    default="post",
    show_default=True,
    help="post: the activation after each convolution; pre: the convolution's own output.",
)

expose_if_option = click.option(
    "--expose-if",
    is_flag=True,
    help="Also expose convolutions inside If branches, threaded out as extra If outputs "
    "(a branch that did not run gives empty maps).",
)

selection_options = _compose(
    click.option(
        "--layers",
        "patterns",
        multiple=True,
        metavar="PATTERN",
        help="Shell glob on layer or tensor name, or re:REGEX (repeatable; default all).",
    ),
    stage_option,
    expose_if_option,
    click.option(
        "--provider",
        "providers",
        multiple=True,
        metavar="NAME",
        help="Execution provider, in priority order (repeatable): auto (default), cpu, cuda, "
        "tensorrt, rocm, migraphx, coreml, dml, openvino, qnn, or a full onnxruntime name.",
    ),
    click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads."),
    click.option(
        "--tf32",
        is_flag=True,
        help="On CUDA, let convolutions use TensorFloat-32: faster, but about 1e-2 relative "
        "error on deep layers (default off: maps match the CPU's to about 1e-5).",
    ),
)

def _max_memory(ctx, param, value):
    if value is None:
        return None
    from .memory import parse_size  # raises OptionError: one Error: line, exit 2

    return parse_size(value)


# `run` only: a scan keeps per-channel statistics, never whole maps.
max_memory_option = click.option(
    "--max-memory",
    metavar="SIZE",
    callback=_max_memory,
    help="Memory the captured maps may take at once, e.g. 4G or 512M (default: a quarter of "
    "RAM); beyond it the layers are captured in several passes, with the same results.",
)

input_options = _compose(
    click.option("--input", "input_name", metavar="NAME", help="Model input to feed the files to."),
    click.option(
        "--feed",
        "feeds",
        type=FeedType(),
        multiple=True,
        help="Value of another model input: NAME=FILE.npy or NAME=NUMBER (repeatable).",
    ),
    click.option(
        "--size",
        type=SizeType(),
        help="Resize images to N or WxH when the model's size is dynamic.",
    ),
    click.option(
        "--layout",
        type=click.Choice(["NCHW", "NHWC"], case_sensitive=False),
        help="Image layout (default: read from the model).",
    ),
    click.option(
        "--preset",
        type=click.Choice(["unit", "imagenet", "signed", "raw"]),
        help="Pixel scaling: unit x/255 (default), imagenet, signed 2x/255-1, raw 0..255.",
    ),
    click.option("--mean", type=FloatListType(), help="Mean per channel, unit scale (a,b,c)."),
    click.option("--std", type=FloatListType(), help="Std per channel, unit scale (a,b,c)."),
    click.option("--bgr", is_flag=True, help="Feed colour channels in BGR order."),
    click.option(
        "--length", type=click.IntRange(min=1), help="Series length for models with a dynamic one."
    ),
    click.option(
        "--channel", type=click.IntRange(min=0), help="Series column for [N, L] (raw audio) models."
    ),
    click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        help="Refuse images with more pixels (default: Pillow's decompression-bomb limit).",
    ),
)


# `dead-filters` and `exemplars`: where the scan runs (fmviz.engines).
engine_options = _compose(
    click.option("--engine", type=click.Choice(["local", "dask"]), default="local",
                 show_default=True, help="local: this machine; dask: a Dask distributed "
                 "cluster (pip install 'fmviz[dask]'; see 'Scanning on a cluster' in the README)."),
    click.option("--scheduler", metavar="ADDR", help="Dask scheduler address, e.g. "
                 "tcp://head:8786 (default: $DASK_SCHEDULER_ADDRESS, else a local cluster "
                 "started for the run)."),
    click.option("--workers", type=click.IntRange(min=1),
                 help="local: threads decoding inputs ahead of inference (default: up to 4); "
                 "dask: worker processes of the local cluster (default: one per core)."),
    click.option("--partition-size", type=click.IntRange(min=1), metavar="N",
                 help="dask: inputs per task (default 64; fewer for a short scan, so that "
                 "every worker has several tasks)."),
)


def _engine_options(kwargs: dict):
    from .engines import EngineOptions

    engine = EngineOptions(engine=kwargs.pop("engine", "local"),
                           scheduler=kwargs.pop("scheduler", None),
                           workers=kwargs.pop("workers", None),
                           partition_size=kwargs.pop("partition_size", None))
    if engine.engine == "local" and engine.scheduler is not None:  # never accepted and ignored
        raise click.UsageError("--scheduler is for --engine dask (this scan runs locally)")
    return engine


def _check_partitions(engine, paths) -> None:
    """--partition-size shapes the dask engine's tasks and a local scan of URLs; refuse it
    where it would change nothing (a local scan of local files)."""
    if engine.engine == "local" and engine.partition_size is not None and not any(
            isinstance(p, str) for p in paths):
        raise click.UsageError("--partition-size is for --engine dask or URL inputs")


def _input_options(kwargs: dict):
    from .inputs import InputOptions

    layout = kwargs.pop("layout", None)
    return InputOptions(
        input_name=kwargs.pop("input_name", None),
        layout=layout.upper() if layout else None,
        size=kwargs.pop("size", None),
        preset=kwargs.pop("preset", None),
        mean=kwargs.pop("mean", None),
        std=kwargs.pop("std", None),
        bgr=kwargs.pop("bgr", False),
        length=kwargs.pop("length", None),
        channel=kwargs.pop("channel", None),
        max_pixels=kwargs.pop("max_pixels", None),
        feeds=tuple(kwargs.pop("feeds", ()) or ()),
    )


def _open_model(path: str, providers=(), threads=None, max_memory=None, expose_if=False,
                tf32=False, conv_search=None):
    from .model import open_model
    from .session import DEFAULT_CONV_SEARCH, ProviderSettings

    return open_model(
        path,
        providers=providers or ("auto",),
        threads=threads,
        max_memory=max_memory,
        expose_if=expose_if,
        settings=ProviderSettings(tf32=tf32, conv_search=conv_search or DEFAULT_CONV_SEARCH),
    )


def _stderr(message: str) -> None:
    click.echo(message, err=True)


# ----------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fmviz")
@debug_option
def cli(debug: bool) -> None:
    """See what each channel of a convolutional network responds to.

    fmviz exposes the outputs of an ONNX model's convolution layers, runs images, time series
    or tensors through onnxruntime, and writes per-channel pictures, statistics and
    dead-filter reports.

    \b
    Example:
        fmviz layers models/digits_cnn.onnx
        fmviz run models/digits_cnn.onnx samples/digit-3.png -o out/
        fmviz dead-filters models/digits_cnn.onnx samples/ --fail-on-dead
    """


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True))
@stage_option
@expose_if_option
@click.option(
    "--size",
    type=SizeType(),
    help="Resolve dynamic image sizes as if fed N or WxH (shapes and receptive fields).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@debug_option
def layers(model: str, stage: str, expose_if: bool, size, as_json: bool, debug: bool) -> None:
    """List a model's convolution layers in topological order.

    \b
    Example:
        fmviz layers models/digits_cnn.onnx
        fmviz layers model.onnx --stage pre --json | jq '.layers[].tensor'
    """
    from .graph import load_model
    from .graph.receptive_table import layer_fields, resolved_shapes

    graph = load_model(model, expose_if=expose_if)
    fields = layer_fields(graph, stage, size)
    shapes = resolved_shapes(graph, stage, size) if size is not None else {}
    rows = []
    for layer in graph.layers:
        row = layer.to_json(stage)
        row["receptive_field"], row["input_stride"] = fields.get(layer.index, (None, None))
        if layer.index in shapes:
            row["shape"] = shapes[layer.index]
        rows.append(row)
    document = {
        "model": graph.to_json(),
        "stage": stage,
        "layers": rows,
        "unreachable": [u.to_json() for u in graph.unreachable],
    }
    if as_json:
        click.echo(json.dumps(document))
        return
    from .reports.console import print_layers

    print_layers(document)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=True),
    default="fmviz-out",
    show_default=True,
    help="Output folder; each input gets OUT/<input-stem>/.",
)
@selection_options
@input_options
@click.option(
    "--normalize",
    type=click.Choice(["channel", "layer"]),
    default="channel",
    show_default=True,
    help="channel: each tile spans its own min..max; layer: one range for all tiles.",
)
@click.option(
    "--clip",
    type=click.FloatRange(min=0, max=50, max_open=True),
    help="Clip values to the P..100-P percentiles before scaling.",
)
@click.option("--cmap", help="Matplotlib colormap for heatmaps (default magma, or RdBu_r when "
              "both signs carry weight; see --center).")
@click.option("--center", type=click.Choice(["zero", "none"]),
              help="zero: always centre the colour scale on 0 (diverging); none: never. "
              "Default: diverging only when both signs carry real weight (README).")
@click.option("--overlay-channel", type=click.IntRange(min=0), metavar="K",
              help="Overlay channel K of each layer (where it has one) instead of its energy.")
@click.option(
    "--max-channels",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Show at most N channels per layer: the strongest by mean |a|.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Overlay opacity at the strongest activation.",
)
@click.option("--save-arrays", is_flag=True, help="Also write arrays.npz (float32, by tensor).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Threads drawing and encoding pictures (default: the CPU count; 1 draws the "
              "layers one after another).")
@max_memory_option
@click.option(
    "--html",
    is_flag=True,
    help="Also write index.html: a self-contained page to browse the layers (no network).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each manifest as one JSON line.")
@click.option("--quiet", "-q", is_flag=True, help="No notices on stderr.")
@debug_option
def run(model, inputs, out, patterns, stage, expose_if, providers, threads, tf32, normalize, clip,
        cmap, center, overlay_channel, max_channels, alpha, save_arrays, workers, max_memory, html,
        as_json, quiet, debug, **kwargs) -> None:
    """Write feature-map pictures and a manifest for each INPUT.

    INPUT is an image, a series (.csv .tsv .wav) or a tensor (.npy .npz), a folder (searched
    recursively for those) or '-' for paths on stdin, one per line. Each input gets OUT/<stem>/
    with NNN-<layer>.grid.png, .heatmap.png, .overlay.png (images) or .series.png (1-D
    layers), and manifest.json.

    \b
    Example:
        fmviz run models/digits_cnn.onnx samples/digit-3.png
        fmviz run model.onnx photo.jpg --layers 're:conv[0-9]+' --cmap viridis -o out/
        ls *.png | fmviz run model.onnx - --json | jq '.layers[0].stats'
    """
    from .visualize import RenderOptions, RunOptions
    from .visualize import run as run_inputs

    input_opts = _input_options(kwargs)
    options = RunOptions(
        out=Path(out),
        patterns=tuple(patterns),
        stage=stage,
        render=RenderOptions(
            normalize=normalize, clip=clip, cmap=cmap, max_channels=max_channels, alpha=alpha,
            center=center, overlay_channel=overlay_channel,
        ),
        inputs=input_opts,
        save_arrays=save_arrays,
        html=html,
        workers=workers,
    )
    from .inputs.collect import collect_inputs

    paths: list[str] = []  # files, folders and '-', each walked once
    for item in inputs:
        found = [str(p) for p in collect_inputs([item], unique=False)]
        if not found and item != "-" and Path(item).is_dir():
            raise click.UsageError(f"{item}: no image, series or tensor files in this folder")
        paths += found
    if not paths:
        raise click.UsageError("no input paths were given (stdin was empty)")
    opened = _open_model(model, providers, threads, max_memory, expose_if, tf32=tf32)
    notify = (lambda message: None) if quiet else (lambda message: _stderr(f"note: {message}"))
    for folder, manifest in run_inputs(opened, paths, options, notify=notify):
        if as_json:
            click.echo(json.dumps(manifest, separators=(",", ":")))
        elif not quiet:
            pictures = sum(len(entry["files"]) for entry in manifest["layers"])
            click.echo(
                f"{manifest['input']['path']} -> {folder}/  {len(manifest['layers'])} layers, "
                f"{pictures} pictures ({', '.join(manifest['providers'])})"
            )


@cli.command("providers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@debug_option
def providers_command(as_json: bool, debug: bool) -> None:
    """Show the onnxruntime build, its execution providers, and whether each GPU provider
    really starts a session here (a tiny model is run on it); if not, why and how to fix it.

    Exit status: 0 when every GPU provider listed starts (or there is none), 1 otherwise.

    \b
    Example:
        fmviz providers
        fmviz providers --json | jq '.checks[] | select(.starts | not) | .reason'
    """
    from .session import provider_report

    report = provider_report()
    if as_json:
        click.echo(json.dumps(report, separators=(",", ":")))
    else:
        versions = ", ".join(f"{k.split('_')[0].upper()} {report[k]}"
                             for k in ("cuda_version", "cudnn_version") if k in report)
        click.echo(f"{report['package']} {report['onnxruntime']} ({report['device']}"
                   f"{', built for ' + versions if versions else ''})")
        click.echo(f"providers: {', '.join(report['available'])}")
        click.echo(f"auto picks: {', '.join(report['auto'])}")
        if not report["checks"]:
            click.echo("no GPU provider in this build (pip install onnxruntime-gpu for CUDA)")
        for check in report["checks"]:
            if check["starts"]:
                click.echo(f"  {check['short']}: starts ({check['seconds']:.2f} s)")
            else:
                click.echo(f"  {check['short']}: does not start: {check['reason']}")
    if any(not check["starts"] for check in report["checks"]):
        raise click.exceptions.Exit(EXIT_GATE)


@cli.command("dead-filters")
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@selection_options
@input_options
@click.option("--eps", type=click.FloatRange(min=0), default=1e-6, show_default=True,
              help="A channel is active where |a| > EPS, dead where it never is.")
@click.option("--rare", type=click.FloatRange(0, 1), default=0.01, show_default=True,
              help="Rare: not dead, and active at fewer than this fraction of positions.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Inputs per batch (default 16; a model with a fixed batch size uses it).")
@click.option("--limit", type=click.IntRange(min=1), help="Scan only the first N inputs.")
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--report", "reports", multiple=True, metavar="PATH",
              help="Write the report to PATH: .json, .md, .html or .csv (repeatable).")
@click.option("--fail-on-dead", is_flag=True, help="Exit 1 if any channel is dead.")
@click.option("--fail-on-inactive", is_flag=True,
              help="Exit 1 if any channel is inactive (never above EPS under SiLU, GELU, ...).")
@click.option("--max-dead-fraction", type=click.FloatRange(0, 1), metavar="F",
              help="Exit 1 if more than this fraction of all channels is dead.")
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first unreadable input.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), metavar="FILE",
              help="Save the statistics to FILE as the scan goes and on Ctrl-C; the same "
              "command run again resumes from it.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=64, show_default=True,
              metavar="N", help="Save the checkpoint every N inputs.")
@click.option("--conv-search", type=click.Choice(["heuristic", "exhaustive", "default"]),
              default="heuristic", show_default=True,  # session.SCAN_CONV_SEARCH
              help="cuDNN convolution algorithm search on CUDA (MIOpen/MIGraphX tuning on AMD): "
              "exhaustive times every algorithm once per input shape (about 1 s each), "
              "which pays off only on long scans of one shape.")
@click.option("--progress", is_flag=True, help="Show a progress bar even when stderr is no "
              "terminal.")
@click.option("--quiet", "-q", is_flag=True, help="No summary, notices or progress.")
@debug_option
def dead_filters(model, inputs, patterns, stage, expose_if, providers, threads, tf32, eps, rare,
                 batch_size, limit, as_json, reports, fail_on_dead, fail_on_inactive,
                 max_dead_fraction, strict, checkpoint, checkpoint_every, conv_search, progress,
                 quiet, debug, **kwargs) -> None:
    """Find channels that never fire (dead), rarely fire, or never change over many INPUTs.

    INPUTs are files, folders (searched recursively for images, series and tensors) and '-'
    for paths on stdin. Every input is streamed through the model in batches; only per-channel
    statistics are kept. Unreadable inputs are skipped and listed (--strict stops instead).
    Exit status: 0 ok, 1 a gate failed (--fail-on-dead, --max-dead-fraction), 2 an error.

    \b
    Example:
        fmviz dead-filters models/digits_cnn.onnx samples/digit-*.png
        fmviz dead-filters model.onnx photos/ --report dead.html --report dead.md
        find data -name '*.jpg' | fmviz dead-filters model.onnx - --fail-on-dead --quiet
        fmviz dead-filters model.onnx big/ --checkpoint scan.npz   # Ctrl-C, then again
    """
    from .reports.deadfilters import build_report, report_targets, write_reports
    from .scan import ScanOptions, collect_inputs, scan

    targets = report_targets(reports)
    engine = _engine_options(kwargs)
    options = ScanOptions(
        patterns=tuple(patterns), stage=stage, inputs=_input_options(kwargs), eps=eps,
        batch_size=batch_size, strict=strict, limit=limit,
        workers=engine.workers if engine.engine == "local" else None,
        checkpoint=Path(checkpoint) if checkpoint else None, checkpoint_every=checkpoint_every,
    )
    options.validate()
    from .engines import collect_any

    paths = collect_any(inputs, collect_inputs)  # a missing path: an error before anything runs

    _check_partitions(engine, paths)
    opened = _open_model(model, providers, threads, expose_if=expose_if, tf32=tf32,
                         conv_search=conv_search)
    notify = (lambda message: None) if quiet else (lambda message: _stderr(f"note: {message}"))
    from .reports.console import ScanProgress

    show_progress = progress or (not quiet and sys.stderr.isatty())
    with ScanProgress(show_progress) as bar:
        if engine.engine == "dask" or any(isinstance(p, str) for p in paths):
            from .engines import scan_on

            result = scan_on(engine, opened, paths, options, progress=bar, notify=notify,
                             expose_if=expose_if)
        else:
            result = scan(opened, paths, options, progress=bar, notify=notify)
    report = build_report(opened.graph.to_json(), result, rare)
    write_reports(report, targets)
    if as_json:
        click.echo(json.dumps(report, separators=(",", ":")))
    elif not quiet:
        from .reports.console import make_console, print_dead_filters

        print_dead_filters(report, make_console())
    summary = report["summary"]
    failed = []
    if fail_on_dead and summary["dead"]:
        failed.append(f"{summary['dead']} dead channel(s) (--fail-on-dead)")
    if fail_on_inactive and summary["inactive"]:
        failed.append(f"{summary['inactive']} inactive channel(s) (--fail-on-inactive)")
    if max_dead_fraction is not None and summary["dead_fraction"] > max_dead_fraction:
        failed.append(f"dead fraction {summary['dead_fraction']:.4g} > {max_dead_fraction:g} "
                      "(--max-dead-fraction)")
    if failed:
        if not quiet:
            _stderr(f"fmviz: gate failed: {'; '.join(failed)}")
        raise click.exceptions.Exit(EXIT_GATE)


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every failure ends as one ``Error: ...`` line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    from .crash import CRASH_HINT, enable_faulthandler, named_call

    enable_faulthandler(debug)  # a SIGSEGV in onnxruntime is never silent
    try:
        # A command's ctx.exit(N) / click Exit(N) (the dead-filters gates) comes back as the
        # return value in non-standalone mode, not as an exception.
        code = named_call(CRASH_HINT, cli.main, args=args, prog_name="fmviz",
                          standalone_mode=False)
    except FmvizError as exc:
        if debug:
            raise
        _stderr(f"Error: {visible(exc.for_cli())}")  # a name with a newline stays on one line
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `fmviz`: the help, not one line
        _stderr(exc.ctx.get_help() if exc.ctx else str(exc))
        return EXIT_USAGE
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        if debug:
            raise
        _stderr(f"Error: {_one_line(exc.format_message())}")
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (| head): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        if debug:
            raise
        _stderr(
            f"Error: internal error {type(exc).__name__}: {_one_line(str(exc))} "
            "(this is a bug in fmviz; run again with --debug for a traceback)"
        )
        return EXIT_INTERNAL
    return code if isinstance(code, int) else EXIT_OK


def _one_line(text: str) -> str:
    return visible(" ".join(text.split()))


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------------------- exemplars


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--out", default="fmviz-exemplars", show_default=True,
              type=click.Path(file_okay=False), help="Output folder.")
@selection_options
@input_options
@click.option("--top", type=click.IntRange(min=1), default=9, show_default=True,
              help="Inputs kept per channel.")
@click.option("--score", type=click.Choice(["max", "mean"]), default="max", show_default=True,
              help="Rank inputs by the channel's maximum over positions, or its mean.")
@click.option("--max-channels", type=click.IntRange(min=1), default=32, show_default=True,
              help="Channels drawn per layer (the most selective first).")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Inputs per batch (default 16; a model with a fixed batch size uses it).")
@click.option("--limit", type=click.IntRange(min=1), help="Scan only the first N inputs.")
@engine_options
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first unreadable input.")
@click.option("--html", is_flag=True, help="Also write index.html: a browsable page.")
@click.option("--json", "as_json", is_flag=True, help="Print exemplars.json on stdout.")
@click.option("--progress", is_flag=True, help="Show a progress bar even when stderr is no "
              "terminal.")
@click.option("--quiet", "-q", is_flag=True, help="No summary, notices or progress.")
@debug_option
def exemplars(model, inputs, out, patterns, stage, expose_if, providers, threads, top, score,
              max_channels, batch_size, limit, strict, html, as_json, progress, quiet,
              debug, **kwargs) -> None:
    """Find, per channel, the INPUTs that make it fire most, and show where.

    Streams INPUTs (files, folders, '-' for paths on stdin) like dead-filters and keeps per
    channel the --top inputs with the highest score and the position of that maximum; then cuts
    each winner's receptive field out of the original input. Writes OUT/exemplars.json and per
    layer NNN-<name>.exemplars.png (a row per channel, its crops in order of score).

    \b
    Example:
        fmviz exemplars models/digits_cnn.onnx samples/ -o ex/
        fmviz exemplars model.onnx photos/ --layers 'conv3*' --top 16 --html
        fmviz exemplars model.onnx s3://bucket/photos/ --engine dask --scheduler tcp://head:8786
    """
    from .engines import collect_any
    from .exemplars import ExemplarOptions, ExemplarScanner, find_exemplars, write_exemplars
    from .scan import collect_inputs

    input_options = _input_options(kwargs)
    engine = _engine_options(kwargs)
    options = ExemplarOptions(
        patterns=tuple(patterns), stage=stage, inputs=input_options, top=top, score=score,
        batch_size=batch_size, strict=strict, limit=limit,
        workers=engine.workers if engine.engine == "local" else None,
    )
    options.validate()
    paths = collect_any(inputs, collect_inputs)  # a missing path: an error before anything runs
    _check_partitions(engine, paths)
    opened = _open_model(model, providers, threads, expose_if=expose_if,
                         tf32=kwargs.pop("tf32", False))
    notify = (lambda message: None) if quiet else (lambda message: _stderr(f"note: {message}"))
    from .reports.console import ScanProgress

    show_progress = progress or (not quiet and sys.stderr.isatty())
    with ScanProgress(show_progress) as bar:
        if engine.engine == "dask" or any(isinstance(p, str) for p in paths):
            from .engines import scan_on

            # the winners' crops are cut below, on this machine (URL inputs read again)
            result = scan_on(engine, opened, paths, options, ExemplarScanner, progress=bar,
                             notify=notify, expose_if=expose_if)
        else:
            result = find_exemplars(opened, paths, options, progress=bar, notify=notify)
    report = write_exemplars(opened, result, input_options, Path(out), max_channels, html)
    if as_json:
        click.echo(json.dumps(report, separators=(",", ":")))
    elif not quiet:
        _stderr(f"{result.inputs_scanned} inputs scanned, {len(result.skipped)} skipped; "
                f"{len(report['layers'])} layers written to {out}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--layers", "patterns", multiple=True, metavar="PATTERN",
              help="Shell glob on layer or tensor name, or re:REGEX (repeatable; default: the "
              "first convolution).")
@click.option("-o", "--out", default="fmviz-filters", show_default=True,
              type=click.Path(file_okay=False), help="Output folder.")
@click.option("--max-channels", type=click.IntRange(min=1), default=64, show_default=True,
              help="Output channels drawn per layer (largest L2 norm first).")
@click.option("--json", "as_json", is_flag=True, help="Print filters.json on stdout.")
@debug_option
def filters(model, patterns, out, max_channels, as_json, debug) -> None:
    """Draw convolution weights: colour templates for a first RGB layer, greyscale tiles per
    input channel for others, line plots for 1-D kernels; per-channel L2 norms in JSON.

    \b
    Example:
        fmviz filters models/digits_cnn.onnx -o filters/
        fmviz filters model.onnx --layers 're:.*conv1.*' --json
    """
    from .filters import draw_filters
    from .graph import load_model

    graph = load_model(model)
    report = draw_filters(graph, patterns, Path(out), max_channels)
    if as_json:
        click.echo(json.dumps(report, separators=(",", ":")))
    else:
        for layer in report["layers"]:
            near = layer.get("near_zero") or []
            drawn = layer.get("files", {}).get("filters") or layer.get("note")
            _stderr(f"{layer['index']} {layer['name']}: {drawn}; {len(near)} near-zero "
                    "filter(s)")
