"""The dead-filter report (``"schema": "fmviz/dead-filters/1"``) and its writers.

:func:`build_report` turns a :class:`~fmviz.scan.ScanResult` into the report dict of SPEC.md;
:func:`write_reports` writes it as ``.json``, ``.md`` (a GitHub job summary), ``.html``
(self-contained: inline CSS and SVG, nothing fetched) or ``.csv`` (one row per channel), each
atomically. Formats are chosen by extension and checked by :func:`report_targets` before a scan
starts.

Numbers: ``max_abs`` values are float32 data and are written with the fewest digits that give
back the same float32; ``mean``/``std`` are rounded to 7 significant digits (float32 precision:
their last float64 bits depend on how the inputs were batched); ``active_fraction`` is an exact
ratio of counts. Values that are not finite are written as null.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import OptionError
from ..io import atomic_write_text, ensure_dir
from ..text import channel_ranges, markdown_cell, percent

SCHEMA = "fmviz/dead-filters/1"
FORMATS = {".json": "json", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
           ".csv": "csv"}
CSV_COLUMNS = ("layer_index", "layer", "tensor", "channel", "max_abs", "mean",
               "active_fraction", "dead", "rare", "constant", "inactive")


# ----------------------------------------------------------------------------- the report dict


def _f32(value: float) -> float | None:
    """A float32 value with the fewest digits that round-trip (null when not finite)."""
    if not np.isfinite(value):
        return None
    return float(str(np.float32(value)))


def _digits(value: float, digits: int = 7) -> float | None:
    if not np.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def build_report(model_json: dict, result, rare: float) -> dict:
    """The report dict of SPEC.md (plus ``stage``, ``samples``, per-layer ``mean``, ...)."""
    layers = []
    totals = {"channels": 0, "dead": 0, "rare": 0, "constant": 0, "inactive": 0}
    for probe, stats in zip(result.probes, result.stats, strict=True):
        dead = stats.dead()
        rare_mask = stats.rare(rare)
        constant = stats.constant()
        entry = {
            **probe.describe(),
            "channels": stats.channels,
            "dead": [int(c) for c in np.flatnonzero(dead)],
            "rare": [int(c) for c in np.flatnonzero(rare_mask)],
            "constant": [int(c) for c in np.flatnonzero(constant)],
            "inactive": [int(c) for c in np.flatnonzero(
                stats.inactive(bool(getattr(probe, "rests_at_or_below_zero", False))))],
            "max_abs": [_f32(v) for v in stats.max_abs],
            "active_fraction": [float(v) for v in stats.active_fraction],
            "mean": [_digits(v) for v in stats.mean],
            "std": [_digits(v) for v in stats.std],
            "min": [_f32(v) for v in stats.min],
            "max": [_f32(v) for v in stats.max],
            "positions": int(stats.count[0]) if stats.channels else 0,
            "nonfinite": int(stats.nonfinite.sum()),
        }
        layers.append(entry)
        totals["channels"] += stats.channels
        totals["dead"] += len(entry["dead"])
        totals["rare"] += len(entry["rare"])
        totals["constant"] += len(entry["constant"])
        totals["inactive"] += len(entry["inactive"])
    channels = totals["channels"]
    return {
        "schema": SCHEMA,
        "fmviz": __version__,
        "model": model_json,
        "providers": list(result.providers),
        "provider_options": {k: dict(v) for k, v in result.provider_options.items()},
        "stage": result.stage,
        "eps": result.eps,
        "rare": rare,
        "inputs_scanned": result.inputs_scanned,
        "inputs_skipped": len(result.skipped),
        "samples": result.samples,
        "skipped": [{"path": s["path"], "error": s["error"]} for s in result.skipped],
        "layers": layers,
        "summary": {
            "layers": len(layers),
            "channels": channels,
            "dead": totals["dead"],
            "rare": totals["rare"],
            "constant": totals["constant"],
            "inactive": totals["inactive"],
            "dead_fraction": totals["dead"] / channels if channels else 0.0,
        },
    }


# ----------------------------------------------------------------------------- writers


def report_targets(paths: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """``(path, format)`` for each ``--report`` path; an unknown extension is an OptionError."""
    targets = []
    for item in paths:
        path = Path(item)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise OptionError(
                "reports", f"{item}: unknown format {path.suffix or '(no extension)'!r} "
                "(use .json, .md, .html or .csv)"
            )
        if path.exists() and path.is_dir():
            raise OptionError("reports", f"{item}: is a folder")
        targets.append((path, fmt))
    return targets


def write_reports(report: dict, targets: Sequence[tuple[Path, str]]) -> None:
    """Write the report in each format, parent folders created, each file atomically."""
    for path, fmt in targets:
        if str(path.parent):
            ensure_dir(path.parent)
        atomic_write_text(path, render(report, fmt))


def render(report: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        from .gallery import scan_page_html  # the same look as the run gallery

        return scan_page_html(report)
    if fmt == "csv":
        return to_csv(report)
    raise OptionError(None, f"unknown report format {fmt!r}")


def to_csv(report: dict) -> str:
    """One row per channel: ``layer_index, layer, tensor, channel, max_abs, mean,
    active_fraction, dead, rare, constant, inactive`` (booleans as true/false)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for layer in report["layers"]:
        dead, rare, constant = (set(layer[k]) for k in ("dead", "rare", "constant"))
        inactive = set(layer.get("inactive", ()))
        for channel in range(layer["channels"]):
            writer.writerow([
                layer["index"], layer["name"], layer["tensor"], channel,
                _cell(layer["max_abs"][channel]), _cell(layer["mean"][channel]),
                _cell(layer["active_fraction"][channel]),
                _flag(channel in dead), _flag(channel in rare), _flag(channel in constant),
                _flag(channel in inactive),
            ])
    return buffer.getvalue()


def _cell(value) -> str:
    return "" if value is None else repr(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def ranked_layers(report: dict, count: int | None = None) -> list[dict]:
    """Layers with dead, inactive, rare or constant channels, most first (dead, then inactive,
    then rare, then constant, then index)."""
    layers = [layer for layer in report["layers"]
              if layer["dead"] or layer.get("inactive") or layer["rare"] or layer["constant"]]
    layers.sort(key=lambda layer: (-len(layer["dead"]), -len(layer.get("inactive", ())),
                                   -len(layer["rare"]), -len(layer["constant"]), layer["index"]))
    return layers if count is None else layers[:count]


def _headline(report: dict) -> str:
    s = report["summary"]
    return (
        f"{s['dead']} dead of {s['channels']} channels ({percent(s['dead'], s['channels'])}) "
        f"in {s['layers']} layers; {s.get('inactive', 0)} inactive, {s['rare']} rare, "
        f"{s['constant']} constant; "
        f"{report['inputs_scanned']} inputs scanned, {len(report['skipped'])} skipped"
    )


_md = markdown_cell  # text safe inside a Markdown table cell


def to_markdown(report: dict) -> str:
    """A Markdown page fit for ``$GITHUB_STEP_SUMMARY``: totals, layers, skipped inputs."""
    s = report["summary"]
    model = report["model"]
    lines = [
        f"## fmviz dead filters: {_md(Path(str(model.get('path', 'model'))).name)}",
        "",
        f"**{_headline(report)}**",
        "",
        f"stage `{report.get('stage', 'post')}` · eps {report['eps']:g} · rare below "
        f"{report['rare']:g} · providers {_md(', '.join(report['providers']))} · "
        f"fmviz {report['fmviz']}",
        "",
        "| dead | inactive | rare | constant | channels | layers | dead fraction |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['dead']} | {s.get('inactive', 0)} | {s['rare']} | {s['constant']} | "
        f"{s['channels']} | {s['layers']} | {s['dead_fraction']:.4f} |",
        "",
        "### Layers",
        "",
        "| # | layer | activation | channels | dead | inactive | rare | constant "
        "| dead channels | inactive channels | rare channels |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for layer in report["layers"]:
        inactive = layer.get("inactive", [])
        lines.append(
            f"| {layer['index']} | {_md(layer['name'])} | {_md(layer['activation'] or '-')} | "
            f"{layer['channels']} | {len(layer['dead'])} | {len(inactive)} | "
            f"{len(layer['rare'])} | {len(layer['constant'])} | "
            f"{_md(channel_ranges(layer['dead'], limit=24))} | "
            f"{_md(channel_ranges(inactive, limit=24))} | "
            f"{_md(channel_ranges(layer['rare'], limit=24))} |"
        )
    if report["skipped"]:
        lines += ["", f"### Skipped inputs ({len(report['skipped'])})", "",
                  "| input | error |", "|---|---|"]
        for item in report["skipped"]:
            lines.append(f"| {_md(item['path'])} | {_md(item['error'])} |")
    return "\n".join(lines) + "\n"
