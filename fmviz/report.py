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
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import OptionError
from .io import atomic_write_text, ensure_dir

SCHEMA = "fmviz/dead-filters/1"
FORMATS = {".json": "json", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
           ".csv": "csv"}
CSV_COLUMNS = ("layer_index", "layer", "tensor", "channel", "max_abs", "mean",
               "active_fraction", "dead", "rare", "constant")


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
    totals = {"channels": 0, "dead": 0, "rare": 0, "constant": 0}
    for layer, stats in zip(result.layers, result.stats, strict=True):
        dead = stats.dead()
        rare_mask = stats.rare(rare)
        constant = stats.constant()
        entry = {
            "index": layer.index,
            "name": layer.name,
            "op": layer.op,
            "tensor": layer.tensor(result.stage),
            "stage": result.stage,
            "activation": layer.activation_at(result.stage),
            "channels": stats.channels,
            "dead": [int(c) for c in np.flatnonzero(dead)],
            "rare": [int(c) for c in np.flatnonzero(rare_mask)],
            "constant": [int(c) for c in np.flatnonzero(constant)],
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
    channels = totals["channels"]
    return {
        "schema": SCHEMA,
        "fmviz": __version__,
        "model": model_json,
        "providers": list(result.providers),
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
                f"--report {item}: unknown format {path.suffix or '(no extension)'!r} "
                "(use .json, .md, .html or .csv)"
            )
        if path.exists() and path.is_dir():
            raise OptionError(f"--report {item}: is a folder")
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
        return to_html(report)
    if fmt == "csv":
        return to_csv(report)
    raise OptionError(f"unknown report format {fmt!r}")


def to_csv(report: dict) -> str:
    """One row per channel: ``layer_index, layer, tensor, channel, max_abs, mean,
    active_fraction, dead, rare, constant`` (booleans as true/false)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for layer in report["layers"]:
        dead, rare, constant = (set(layer[k]) for k in ("dead", "rare", "constant"))
        for channel in range(layer["channels"]):
            writer.writerow([
                layer["index"], layer["name"], layer["tensor"], channel,
                _cell(layer["max_abs"][channel]), _cell(layer["mean"][channel]),
                _cell(layer["active_fraction"][channel]),
                _flag(channel in dead), _flag(channel in rare), _flag(channel in constant),
            ])
    return buffer.getvalue()


def _cell(value) -> str:
    return "" if value is None else repr(value)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _ranges(channels: Sequence[int], limit: int = 24) -> str:
    """``0-3, 7, 9-10``; after about ``limit`` channels, ``..., (N in all)``."""
    parts: list[str] = []
    shown = i = 0
    while i < len(channels):
        j = i
        while j + 1 < len(channels) and channels[j + 1] == channels[j] + 1:
            j += 1
        parts.append(str(channels[i]) if i == j else f"{channels[i]}-{channels[j]}")
        shown += j - i + 1
        i = j + 1
        if shown >= limit and i < len(channels):
            return ", ".join(parts) + f", ... ({len(channels)} in all)"
    return ", ".join(parts)


def ranked_layers(report: dict, count: int | None = None) -> list[dict]:
    """Layers with dead or rare channels, most first (dead, then rare, then index)."""
    layers = [layer for layer in report["layers"]
              if layer["dead"] or layer["rare"] or layer["constant"]]
    layers.sort(key=lambda layer: (-len(layer["dead"]), -len(layer["rare"]),
                                   -len(layer["constant"]), layer["index"]))
    return layers if count is None else layers[:count]


def _headline(report: dict) -> str:
    s = report["summary"]
    return (
        f"{s['dead']} dead of {s['channels']} channels ({_percent(s['dead'], s['channels'])}) "
        f"in {s['layers']} layers; {s['rare']} rare, {s['constant']} constant; "
        f"{report['inputs_scanned']} inputs scanned, {len(report['skipped'])} skipped"
    )


def _md(text) -> str:
    """Text safe inside a Markdown table cell."""
    value = "" if text is None else str(text)
    value = value.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    value = value.replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(value.split())


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
        "| dead | rare | constant | channels | layers | dead fraction |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {s['dead']} | {s['rare']} | {s['constant']} | {s['channels']} | {s['layers']} | "
        f"{s['dead_fraction']:.4f} |",
        "",
        "### Layers",
        "",
        "| # | layer | activation | channels | dead | rare | constant | dead channels "
        "| rare channels |",
        "|---:|---|---|---:|---:|---:|---:|---|---|",
    ]
    for layer in report["layers"]:
        lines.append(
            f"| {layer['index']} | {_md(layer['name'])} | {_md(layer['activation'] or '-')} | "
            f"{layer['channels']} | {len(layer['dead'])} | {len(layer['rare'])} | "
            f"{len(layer['constant'])} | {_md(_ranges(layer['dead']))} | "
            f"{_md(_ranges(layer['rare']))} |"
        )
    if report["skipped"]:
        lines += ["", f"### Skipped inputs ({len(report['skipped'])})", "",
                  "| input | error |", "|---|---|"]
        for item in report["skipped"]:
            lines.append(f"| {_md(item['path'])} | {_md(item['error'])} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:
960px;padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
h3{font-size:1rem;margin:1.6rem 0 .3rem}.meta{color:#555}
table{border-collapse:collapse;margin:.6rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid
#ddd;text-align:left;vertical-align:top}th{background:#f5f5f7}td.n,th.n{text-align:right}
.dead{color:#c62828;font-weight:600}.rare{color:#b26a00}.ok{color:#2e7d32}
svg{display:block;margin:.2rem 0 .6rem;background:#fafafa;border:1px solid #e5e5e5}
svg text{font:11px system-ui,sans-serif;fill:#555}.legend span{margin-right:1rem}
.sw{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
"""

_WIDTH, _PLOT_HEIGHT, _LEFT, _GAP = 880, 70, 110, 18


def _bars(values: Sequence[float], top: float, y0: float, colour: str,
          select: Sequence[int] | None = None) -> str:
    """One SVG path of vertical bars, one per channel, scaled so ``top`` fills the plot."""
    count = len(values)
    if not count:
        return ""
    step = (_WIDTH - _LEFT - 10) / count
    width = max(step * 0.8, 0.6)
    chosen = range(count) if select is None else select
    parts = []
    for c in chosen:
        value = values[c]
        if value is None or top <= 0:
            continue
        height = max(0.0, min(1.0, value / top)) * _PLOT_HEIGHT
        if height <= 0:
            continue
        x = _LEFT + c * step
        parts.append(f"M{x:.1f} {y0 + _PLOT_HEIGHT:.1f}h{width:.1f}v{-height:.1f}h{-width:.1f}z")
    if not parts:
        return ""
    return f'<path fill="{colour}" d="{"".join(parts)}"/>'


def _marks(channels: Sequence[int], count: int, y: float, colour: str) -> str:
    if not channels or not count:
        return ""
    step = (_WIDTH - _LEFT - 10) / count
    width = max(step * 0.8, 0.6)
    d = "".join(f"M{_LEFT + c * step:.1f} {y:.1f}h{width:.1f}v4h{-width:.1f}z" for c in channels)
    return f'<path fill="{colour}" d="{d}"/>'


def _layer_svg(layer: dict, rare: float) -> str:
    """Two bar charts over the channels: max |a| (linear, to the layer's largest) and the
    active fraction (0..1, with the --rare threshold drawn); dead channels are marked in red
    below the axes, rare ones in orange."""
    values = layer["max_abs"]
    finite = [v for v in values if v is not None]
    top = max(finite) if finite else 0.0
    count = layer["channels"]
    height = 2 * _PLOT_HEIGHT + 3 * _GAP + 8
    y1, y2 = _GAP, 2 * _GAP + _PLOT_HEIGHT + 4
    dead, rare_channels = layer["dead"], layer["rare"]
    label = html.escape(layer["name"])
    parts = [
        f'<svg role="img" aria-label="channel statistics of {label}" width="{_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_WIDTH} {height}">',
        f'<text x="4" y="{y1 + 12}">max |a|</text>',
        f'<text x="4" y="{y1 + 26}">0 .. {top:.4g}</text>',
        f'<line x1="{_LEFT}" x2="{_WIDTH - 10}" y1="{y1 + _PLOT_HEIGHT}" '
        f'y2="{y1 + _PLOT_HEIGHT}" stroke="#bbb"/>',
        _bars(values, top, y1, "#3f6fb5"),
        _marks(dead, count, y1 + _PLOT_HEIGHT + 1, "#c62828"),
        f'<text x="4" y="{y2 + 12}">active fraction</text>',
        f'<text x="4" y="{y2 + 26}">0 .. 1</text>',
        f'<line x1="{_LEFT}" x2="{_WIDTH - 10}" y1="{y2 + _PLOT_HEIGHT}" '
        f'y2="{y2 + _PLOT_HEIGHT}" stroke="#bbb"/>',
        _bars(layer["active_fraction"], 1.0, y2, "#5b9a68"),
        _bars(layer["active_fraction"], 1.0, y2, "#e09b2d", rare_channels),
        _marks(rare_channels, count, y2 + _PLOT_HEIGHT + 1, "#e09b2d"),
        _marks(dead, count, y2 + _PLOT_HEIGHT + 1, "#c62828"),
    ]
    if 0 < rare < 1:
        y = y2 + _PLOT_HEIGHT * (1 - rare)
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#e09b2d" stroke-dasharray="3 3"/>')
    parts.append(f'<text x="{_LEFT}" y="{height - 2}">channel 0</text>')
    parts.append(f'<text x="{_WIDTH - 10}" y="{height - 2}" text-anchor="end">'
                 f'channel {count - 1}</text>')
    parts.append("</svg>")
    return "".join(p for p in parts if p)


def to_html(report: dict) -> str:
    """A self-contained page: inline CSS, one inline SVG per layer, no external references."""
    e = html.escape
    s = report["summary"]
    model = report["model"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>fmviz dead filters: {e(Path(str(model.get('path', 'model'))).name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Dead filters: {e(str(model.get('path', '')))}</h1>",
        f'<p class="meta">{e(_headline(report))}<br>stage {e(str(report.get("stage")))} · '
        f"eps {report['eps']:g} · rare below {report['rare']:g} · providers "
        f"{e(', '.join(report['providers']))} · fmviz {e(report['fmviz'])} · "
        f"sha256 {e(str(model.get('sha256', ''))[:16])}</p>",
        "<table><tr>"
        + "".join(f'<th class="n">{h}</th>' for h in
                  ("dead", "rare", "constant", "channels", "layers", "dead fraction"))
        + "</tr><tr>"
        + f'<td class="n dead">{s["dead"]}</td><td class="n rare">{s["rare"]}</td>'
        + f'<td class="n">{s["constant"]}</td><td class="n">{s["channels"]}</td>'
        + f'<td class="n">{s["layers"]}</td><td class="n">{s["dead_fraction"]:.4f}</td>'
        + "</tr></table>",
        '<p class="legend"><span><i class="sw" style="background:#3f6fb5"></i>max |a|</span>'
        '<span><i class="sw" style="background:#5b9a68"></i>active fraction</span>'
        '<span><i class="sw" style="background:#e09b2d"></i>rare</span>'
        '<span><i class="sw" style="background:#c62828"></i>dead</span></p>',
        "<h2>Layers</h2>",
    ]
    for layer in report["layers"]:
        status = (f'<span class="dead">{len(layer["dead"])} dead</span>' if layer["dead"]
                  else '<span class="ok">0 dead</span>')
        out.append(
            f'<section id="layer-{layer["index"]}"><h3>{layer["index"]}. {e(layer["name"])} '
            f'<small class="meta">{e(layer["op"])} · {e(layer["activation"] or "no activation")}'
            f" · {layer['channels']} channels · tensor {e(layer['tensor'])}</small></h3>"
            f"<p>{status}, {len(layer['rare'])} rare, {len(layer['constant'])} constant"
            + (f" · dead: {e(_ranges(layer['dead']))}" if layer["dead"] else "")
            + (f" · rare: {e(_ranges(layer['rare']))}" if layer["rare"] else "")
            + (f" · constant: {e(_ranges(layer['constant']))}" if layer["constant"] else "")
            + "</p>"
            + _layer_svg(layer, report["rare"])
            + "</section>"
        )
    out.append(f"<h2>Skipped inputs ({len(report['skipped'])})</h2>")
    if report["skipped"]:
        out.append("<table><tr><th>input</th><th>error</th></tr>")
        out.extend(f"<tr><td>{e(i['path'])}</td><td>{e(i['error'])}</td></tr>"
                   for i in report["skipped"])
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
