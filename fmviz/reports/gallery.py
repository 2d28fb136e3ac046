"""Self-contained HTML pages: a run's gallery (``index.html``) and a dead-filter scan report.

Each page is one file that opens from ``file://`` with no server and no network: CSS and
JavaScript are inline, pictures are the run's PNGs referenced by their plain file names in the
same folder. Safety, in layers:

- every string from the model or the manifest goes through :func:`html.escape`;
- data for the scripts is JSON inside ``<script type="application/json">`` with ``<``, ``>``
  and ``&`` written as ``\\u003c`` ... so no name can close the script element;
- the scripts only ever put that data in the page with ``textContent``, never ``innerHTML``;
- a Content-Security-Policy with a per-page nonce runs only this module's own script and style,
  and allows no request but images from the page's own folder.

Public functions: :func:`write_run_page` (called by ``fmviz run --html``),
:func:`scan_page_html` (the page ``fmviz dead-filters --report scan.html`` writes, through
:mod:`fmviz.report`) and :func:`run_page_html`, which return the page text.
"""

from __future__ import annotations

import html
import json
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from ..formatting import channel_ranges, format_shape
from ..io import atomic_write_text, ensure_dir

__all__ = [
    "INPUT_PICTURE",
    "PAGE_NAME",
    "run_page_html",
    "scan_page_html",
    "write_run_page",
]

PAGE_NAME = "index.html"
INPUT_PICTURE = "input.png"
_VIEW_ORDER = ("grid", "heatmap", "overlay", "series")
_TILE_VIEWS = ("grid", "heatmap")  # views whose pictures hold the tiles at the layout's boxes
_SIGNAL_POINTS = 600  # an input signal is drawn with at most this many points per channel
_SIGNAL_CHANNELS = 8
_CHART_WIDTH, _CHART_HEIGHT = 720, 84
_CLASS_COLOURS = {  # dead-filter classes: one colour each, also in the CSS below
    "dead": "#d1352b",
    "constant": "#8e5cc4",
    "rare": "#e69b1e",
    "healthy": "#3f9b59",
}


# ----------------------------------------------------------------------------- writing


def write_run_page(
    folder: str | Path,
    manifest: Mapping,
    *,
    picture=None,
    signal=None,
) -> Path:
    """Write ``index.html`` (and ``input.png`` when ``picture`` is given) into ``folder``.

    ``manifest`` is the run's manifest (schema ``fmviz/run/1``), whose layer files lie in
    ``folder``. ``picture`` is the oriented display picture of an image input (PIL image);
    ``signal`` the ``[C, L]`` array of a series input, drawn inline as SVG. Both files are
    written atomically. Returns the page's path.
    """
    folder = ensure_dir(Path(folder))
    picture_name = None
    if picture is not None:
        from ..render import save_png

        save_png(
            picture.convert("RGB") if picture.mode not in ("RGB", "L") else picture,
            folder / INPUT_PICTURE,
        )
        picture_name = INPUT_PICTURE
    page = folder / PAGE_NAME
    atomic_write_text(page, run_page_html(manifest, picture=picture_name, signal=signal))
    return page


# ----------------------------------------------------------------------------- helpers


def _e(value) -> str:
    """Escape anything for HTML text or a quoted attribute value."""
    return html.escape("" if value is None else str(value), quote=True)


def _src(name: str) -> str:
    """A file name from the manifest as a relative URL that stays in the page's folder."""
    return _e(quote(Path(str(name)).name, safe=""))


def _script_json(data) -> str:
    """JSON that cannot end the <script> element it sits in, nor open a comment."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _round(value, digits: int = 6):
    """A float to ``digits`` significant digits for the embedded data; non-finite -> None."""
    if value is None or isinstance(value, bool):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return float(f"{number:.{digits}g}")


def _rounded(values: Iterable | None, digits: int = 6) -> list:
    return [_round(v, digits) for v in (values or [])]


def _num(value, digits: int = 4) -> str:
    """A number for people: ``—`` for missing, short exponent form for very large/small."""
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if not math.isfinite(number):
        return str(number)
    if number == 0:
        return "0"
    if abs(number) >= 1e5 or abs(number) < 1e-3:
        return f"{number:.{max(1, digits - 2)}e}"
    return f"{number:.{digits}g}"


def _percent(value) -> str:
    if value is None:
        return "—"
    return f"{100 * float(value):.1f}%"


def _dl(rows: Sequence[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already."""
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _page(title: str, body: str, data, script: str, nonce: str) -> str:
    csp = (
        # file: as well as 'self': browsers differ on whether 'self' matches file:// pages
        "default-src 'none'; img-src 'self' file:; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'none'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f'<title>{_e(title)}</title>\n<style nonce="{nonce}">{_CSS}</style>\n</head>\n'
        f"<body>\n{body}\n"
        f'<script type="application/json" id="fmviz-data">{_script_json(data)}</script>\n'
        f'<script nonce="{nonce}">{script}</script>\n</body>\n</html>\n'
    )


def _model_rows(model: Mapping) -> list[tuple[str, str]]:
    sha = str(model.get("sha256") or "")
    rows = [
        ("model", f"<code>{_e(model.get('path'))}</code>"),
        ("sha256", f'<code title="{_e(sha)}">{_e(sha[:12])}</code>' if sha else "—"),
        (
            "opset",
            _e(model.get("opset"))
            + (f" · IR {_e(model.get('ir_version'))}" if model.get("ir_version") else ""),
        ),
    ]
    if model.get("producer"):
        rows.append(("producer", _e(model.get("producer"))))
    inputs = model.get("inputs") or []
    if inputs:
        rows.append(
            (
                "inputs",
                "<br>".join(
                    f"<code>{_e(i.get('name'))}</code> {_e(format_shape(i.get('shape')))} "
                    f"{_e(i.get('dtype'))}"
                    for i in inputs
                ),
            )
        )
    return rows


def _value_text(value) -> str:
    if isinstance(value, float):
        return _num(value, 6)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return "—" if value is None else str(value)


def _kv_table(record: Mapping | None, empty: str = "none") -> str:
    if not record:
        return f'<span class="muted">{_e(empty)}</span>'
    rows = "".join(
        f'<tr><th scope="row">{_e(k)}</th><td>{_e(_value_text(v))}</td></tr>'
        for k, v in record.items()
    )
    return f'<table class="kvt">{rows}</table>'


# ----------------------------------------------------------------------------- run page


def _layer_views(layer: Mapping) -> list[tuple[str, str]]:
    files = layer.get("files") or {}
    views = [(v, files[v]) for v in _VIEW_ORDER if files.get(v)]
    views += [(k, f) for k, f in files.items() if k not in _VIEW_ORDER and f]
    return views


def _signal_svg(signal) -> str:
    """A small inline SVG of an input signal ``[C, L]``: one lane per channel."""
    import numpy as np

    array = np.asarray(signal, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    array = array.reshape(array.shape[0], -1)
    channels, length = array.shape
    shown = min(channels, _SIGNAL_CHANNELS)
    if length == 0 or shown == 0:
        return ""
    width, lane = 640, 56
    height = lane * shown
    parts = []
    for c in range(shown):
        row = np.where(np.isfinite(array[c]), array[c], 0.0)
        if length > _SIGNAL_POINTS:  # min and max per bucket, in time order: the envelope
            starts = np.linspace(0, length, _SIGNAL_POINTS // 2 + 1).astype(int)
            picks = []
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                lo_at, hi_at = a + int(row[a:b].argmin()), a + int(row[a:b].argmax())
                picks += sorted({lo_at, hi_at})
            xs = np.array(picks)
            ys = row[xs]
        else:
            xs, ys = np.arange(length), row
        lo, hi = float(ys.min()), float(ys.max())
        span = hi - lo or 1.0
        px = xs * (width - 1) / max(length - 1, 1)
        py = c * lane + 4 + (lane - 8) * (1 - (ys - lo) / span)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        parts.append(f'<polyline points="{points}"/>')
        parts.append(f'<text x="4" y="{c * lane + 14}">ch {c} · {_num(lo)} … {_num(hi)}</text>')
    note = f'<p class="muted">first {shown} of {channels} channels</p>' if channels > shown else ""
    return (
        f'<svg class="signal" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="input signal, {channels} channels, '
        f'{length} samples">{"".join(parts)}</svg>{note}'
    )


def _input_figure(manifest: Mapping, picture: str | None, signal) -> str:
    info = manifest.get("input") or {}
    kind = info.get("kind")
    if picture:
        return (
            f'<figure class="input"><img src="{_src(picture)}" alt="input picture" '
            f'id="input-picture"><figcaption>the input picture, oriented, before resizing'
            "</figcaption></figure>"
        )
    if signal is not None:
        svg = _signal_svg(signal)
        if svg:
            return f'<figure class="input">{svg}<figcaption>input signal</figcaption></figure>'
    if kind == "series":
        for layer in manifest.get("layers") or []:
            series = (layer.get("files") or {}).get("series")
            if series:
                return (
                    f'<figure class="input"><img src="{_src(series)}" alt="first layer\'s '
                    f'series strip, with the input signal"><figcaption>input signal (top of '
                    f"the first layer's strip)</figcaption></figure>"
                )
    return (
        f'<figure class="input none"><p class="muted">{_e(kind or "input")} '
        f"{_e(format_shape(info.get('tensor_shape')))}: no picture</p></figure>"
    )


def _layer_list(layers: Sequence[Mapping]) -> str:
    rows = []
    for pos, layer in enumerate(layers):
        shown = len(layer.get("shown_channels") or [])
        channels = layer.get("channels")
        count = _e(channels) if not shown or shown == channels else f"{shown} of {_e(channels)}"
        stats = layer.get("stats") or {}
        rows.append(
            f'<tr><td class="num">{_e(layer.get("index"))}</td>'
            f'<td><a href="#layer-{pos}">{_e(layer.get("name"))}</a></td>'
            f"<td>{_e(layer.get('op'))}</td><td>{_e(layer.get('activation') or '—')}</td>"
            f'<td class="num">{count}</td>'
            f'<td class="num">{_e(format_shape(layer.get("shape")))}</td>'
            f'<td class="num">{_percent(stats.get("zero_fraction"))}</td></tr>'
        )
    return (
        '<table class="list" id="layer-list"><thead><tr><th>#</th><th>layer</th><th>op</th>'
        "<th>activation</th><th>channels</th><th>shape</th><th>zeros</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _layer_section(pos: int, layer: Mapping) -> str:
    views = _layer_views(layer)
    stats = layer.get("stats") or {}
    channels = layer.get("channels")
    shown = len(layer.get("shown_channels") or [])
    buttons = "".join(
        f'<button type="button" data-view="{_e(view)}" data-src="{_src(name)}" '
        f'aria-pressed="{"true" if i == 0 else "false"}">{_e(view)}</button>'
        for i, (view, name) in enumerate(views)
    )
    first_view, first_src = views[0] if views else ("", "")
    layout = _tile_layout(layer)
    tiles = layout is not None
    unit = layout["unit"] if layout else "tile"
    image = (
        f'<img class="map" src="{_src(first_src)}" data-view="{_e(first_view)}" '
        f'alt="{_e(first_view)} of layer {_e(layer.get("name"))}" loading="lazy">'
        if views
        else '<p class="muted">no picture</p>'
    )
    meta = [
        f"<code>{_e(layer.get('op'))}</code>",
        f"activation <b>{_e(layer.get('activation') or 'none')}</b>",
        f"tensor <code>{_e(layer.get('tensor'))}</code>",
        f"shape {_e(format_shape(layer.get('shape')))}",
        f"{_e(channels)} channels" + (f" ({shown} shown)" if shown and shown != channels else ""),
    ]
    if layer.get("view"):
        meta.append(_e(layer["view"]))
    summary = (
        f"min {_num(stats.get('min'))} · max {_num(stats.get('max'))} · "
        f"mean {_num(stats.get('mean'))} · std {_num(stats.get('std'))} · "
        f"zeros {_percent(stats.get('zero_fraction'))}"
        + (
            f' · <b class="warn">{_e(stats["nonfinite"])} non-finite</b>'
            if stats.get("nonfinite")
            else ""
        )
    )
    zoom = (
        '<aside class="zoom" aria-live="polite"><canvas class="zoom-tile" width="1" '
        f'height="1" hidden></canvas><p class="zoom-hint muted">Hover or click a {unit} to see '
        'its channel enlarged.</p><dl class="zoom-stats kv" hidden></dl></aside>'
        if tiles
        else ""
    )
    n_stats = len((layer.get("channel_stats") or {}).get("max") or [])
    table = (
        f'<details class="channels"><summary>Per-channel statistics ({n_stats} channels)'
        '</summary><table class="stats sortable"><thead><tr>'
        '<th scope="col" data-key="channel" aria-sort="ascending"><button type="button">'
        "channel</button></th>"
        f'<th scope="col" data-key="tile"><button type="button">{unit}</button></th>'
        '<th scope="col" data-key="max"><button type="button">max</button></th>'
        '<th scope="col" data-key="mean"><button type="button">mean</button></th>'
        '<th scope="col" data-key="zero"><button type="button">zeros</button></th>'
        "</tr></thead><tbody></tbody></table></details>"
        if n_stats
        else ""
    )
    return (
        f'<section class="layer" id="layer-{pos}" data-pos="{pos}">'
        f'<h2><span class="idx">{_e(layer.get("index"))}</span> {_e(layer.get("name"))}</h2>'
        f'<p class="meta">{" · ".join(meta)}</p><p class="meta">{summary}</p>'
        f'<div class="views" role="group" aria-label="picture">{buttons}</div>'
        f'<div class="body"><figure class="pic{" tiles" if tiles else ""}">{image}'
        f'<div class="pick" hidden></div></figure>{zoom}</div>{table}'
        f'<p class="top"><a href="#top">top ↑</a></p></section>'
    )


def _tile_layout(layer: Mapping) -> dict | None:
    """Where each shown channel sits in the layer's pictures, one form for grids and strips.

    Box ``k`` (the k-th shown channel) is at ``(x0 + col * (w + gx), y0 + row * (h + gy))``,
    ``row, col = divmod(k, cols)``, in the pictures of ``views``. None where there is no layout.
    """
    files = layer.get("files") or {}
    grid = layer.get("grid")
    series = layer.get("series_layout")
    try:
        if isinstance(grid, Mapping) and grid.get("channels"):
            views = [v for v in _TILE_VIEWS if files.get(v)]
            gap, w, h = int(grid["gap"]), int(grid["tile_width"]), int(grid["tile_height"])
            cols = int(grid["cols"])
            if views:
                return {
                    "views": views,
                    "unit": "tile",
                    "x0": gap,
                    "y0": gap,
                    "w": w,
                    "h": h,
                    "gx": gap,
                    "gy": gap,
                    "cols": cols,
                    "rows": int(grid["rows"]),
                    "fit": cols * (w + gap) + gap,
                    "channels": [int(c) for c in grid["channels"]],
                }
        shown = layer.get("shown_channels") or []
        if isinstance(series, Mapping) and files.get("series") and shown:
            return {
                "views": ["series"],
                "unit": "row",
                "x0": int(series["plot_x"]),
                "y0": int(series["strip_top"]),
                "w": int(series["plot_width"]),
                "h": int(series["row_height"]),
                "gx": 0,
                "gy": int(series["row_gap"]),
                "cols": 1,
                "rows": len(shown),
                "fit": None,
                "channels": [int(c) for c in shown],
            }
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _run_data(manifest: Mapping) -> dict:
    layers = []
    for layer in manifest.get("layers") or []:
        cs = layer.get("channel_stats") or {}
        layers.append(
            {
                "index": layer.get("index"),
                "name": layer.get("name"),
                "tiles": _tile_layout(layer),
                "ranges": [_rounded(r, 5) for r in layer.get("ranges") or []],
                "max": _rounded(cs.get("max")),
                "mean": _rounded(cs.get("mean")),
                "zero": _rounded(cs.get("zero_fraction"), 4),
            }
        )
    return {"layers": layers}


def run_page_html(manifest: Mapping, *, picture: str | None = None, signal=None) -> str:
    """The gallery page of one run's folder (see :func:`write_run_page`)."""
    nonce = secrets.token_urlsafe(16)
    model = manifest.get("model") or {}
    info = manifest.get("input") or {}
    layers = manifest.get("layers") or []
    input_path = str(info.get("path") or "")
    title = (
        f"fmviz · {Path(input_path).name or 'input'} · {Path(str(model.get('path') or '')).name}"
    )
    views = [v for v in _VIEW_ORDER if any((x.get("files") or {}).get(v) for x in layers)]
    global_switch = (
        '<div class="views" id="all-views" role="group" aria-label="all layers">'
        '<span class="muted">all layers:</span>'
        + "".join(f'<button type="button" data-view="{_e(v)}">{_e(v)}</button>' for v in views)
        + "</div>"
        if len(views) > 1
        else ""
    )
    run_rows = _model_rows(model) + [
        (
            "input",
            f"<code>{_e(input_path)}</code> · {_e(info.get('kind'))} · tensor "
            f"{_e(format_shape(info.get('tensor_shape')))} {_e(info.get('tensor_dtype') or '')}",
        ),
        ("providers", _e(", ".join(manifest.get("providers") or []) or "—")),
        ("stage", _e(manifest.get("stage"))),
    ]
    details = (
        '<details class="more"><summary>Preprocessing, feeds, rendering, timings</summary>'
        f"<h3>preprocessing</h3>{_kv_table(info.get('preprocess'))}"
        f"<h3>other inputs</h3>{_kv_table(info.get('feeds'), 'none')}"
        f"<h3>rendering</h3>{_kv_table(manifest.get('render'))}"
        f"<h3>timings (ms)</h3>{_kv_table(manifest.get('timings_ms'))}</details>"
    )
    body = (
        f'<header id="top"><h1>{_e(Path(input_path).name or "input")} '
        f"<small>through {_e(Path(str(model.get('path') or '')).name)}</small></h1>"
        f'<p class="muted">fmviz {_e(manifest.get("fmviz"))} · {len(layers)} layers</p></header>'
        f'<main><div class="summary"><div>{_dl(run_rows)}{details}</div>'
        f"{_input_figure(manifest, picture, signal)}</div>"
        f'<h2 class="sec">Layers</h2>{_layer_list(layers)}{global_switch}'
        + "".join(_layer_section(pos, layer) for pos, layer in enumerate(layers))
        + "</main>"
    )
    return _page(title, body, _run_data(manifest), _RUN_JS, nonce)


# ----------------------------------------------------------------------------- scan page


def _channel_classes(layer: Mapping) -> list[str]:
    """One class per channel, the first that applies: dead, constant, rare, healthy."""
    n = int(layer.get("channels") or len(layer.get("max_abs") or []))
    classes = ["healthy"] * n
    for name in ("rare", "constant", "dead"):  # later wins
        for c in layer.get(name) or []:
            if isinstance(c, int) and 0 <= c < n:
                classes[c] = name
    return classes


def _stacked_bar(counts: Mapping[str, int], total: int, width: int = 220) -> str:
    if total <= 0:
        return ""
    x = 0.0
    rects = []
    for name in ("dead", "constant", "rare", "healthy"):
        n = counts.get(name, 0)
        if not n:
            continue
        w = width * n / total
        rects.append(
            f'<rect class="c-{name}" x="{x:.2f}" y="0" width="{w:.2f}" height="14">'
            f"<title>{n} {name} ({100 * n / total:.1f}%)</title></rect>"
        )
        x += w
    label = ", ".join(f"{counts.get(k, 0)} {k}" for k in _CLASS_COLOURS)
    return (
        f'<svg class="bar" viewBox="0 0 {width} 14" width="{width}" height="14" '
        f'role="img" aria-label="{_e(label)}">{"".join(rects)}</svg>'
    )


def _chart(values: Sequence, classes: Sequence[str], kind: str, eps: float, rare: float) -> str:
    """An inline SVG bar chart, one bar per channel, one <path> per class (stays small)."""
    n = len(values)
    if not n:
        return ""
    width, height = _CHART_WIDTH, _CHART_HEIGHT
    bw = width / n
    numbers = [float(v) if v is not None and math.isfinite(float(v)) else 0.0 for v in values]
    if kind == "max_abs":
        floor = eps if eps > 0 else min((v for v in numbers if v > 0), default=1e-6)
        top = max(max(numbers), floor * 10)
        span = math.log10(top / floor) or 1.0

        def frac(v: float) -> float:
            return 0.0 if v <= floor else min(1.0, math.log10(v / floor) / span)

        marks = [(1.0, _num(top)), (0.0, f"eps {_num(floor)}")]
        label = "max |a| per channel (log scale)"
    else:

        def frac(v: float) -> float:
            return min(1.0, max(0.0, v))

        marks = [(1.0, "1"), (0.0, "0")]
        if 0 < rare < 1:
            marks.append((rare, f"rare {_num(rare)}"))
        label = "active fraction per channel"
    paths: dict[str, list[str]] = {}
    for c, v in enumerate(numbers):
        h = max(frac(v) * (height - 2), 2.0)  # a dead channel still shows a 2-px stub
        paths.setdefault(classes[c] if c < len(classes) else "healthy", []).append(
            f"M{c * bw:.2f} {height - h:.2f}h{max(bw - (0.5 if bw > 3 else 0), 0.6):.2f}"
            f"V{height}H{c * bw:.2f}z"
        )
    shapes = "".join(f'<path class="c-{name}" d="{"".join(d)}"/>' for name, d in paths.items())
    lines = "".join(
        f'<line class="mark" x1="0" x2="{width}" y1="{height - f * (height - 2):.1f}" '
        f'y2="{height - f * (height - 2):.1f}"/>'
        for f, _ in marks
        if 0 < f < 1
    )
    ticks = "".join(f"<span>{_e(text)}</span>" for _, text in sorted(marks, reverse=True))
    return (
        f'<div class="chart"><div class="chart-label">{_e(label)}</div><div class="plot">'
        f'<svg class="chan" data-kind="{kind}" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="none" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)}">{shapes}{lines}</svg><div class="ticks">{ticks}</div>'
        "</div></div>"
    )


def _scan_data(report: Mapping) -> dict:
    return {
        "layers": [
            {
                "name": layer.get("name"),
                "max_abs": _rounded(layer.get("max_abs"), 4),
                "active": _rounded(layer.get("active_fraction"), 4),
                "classes": _channel_classes(layer),
            }
            for layer in report.get("layers") or []
        ]
    }


def scan_page_html(report: Mapping) -> str:
    """A dead-filter report (schema ``fmviz/dead-filters/1``) as one self-contained page."""
    nonce = secrets.token_urlsafe(16)
    model = report.get("model") or {}
    layers = report.get("layers") or []
    summary = report.get("summary") or {}
    skipped = report.get("skipped") or []
    eps = float(report.get("eps") or 0.0)
    rare = float(report.get("rare") or 0.0)
    model_name = Path(str(model.get("path") or "model")).name
    totals: dict[str, int] = dict.fromkeys(_CLASS_COLOURS, 0)
    per_layer = []
    for layer in layers:
        classes = _channel_classes(layer)
        counts = dict.fromkeys(_CLASS_COLOURS, 0)
        for name in classes:
            counts[name] += 1
        for name, n in counts.items():
            totals[name] += n
        per_layer.append((layer, classes, counts))
    channels = int(summary.get("channels") or sum(len(c) for _, c, _ in per_layer))
    cards = [
        ("inputs scanned", _e(report.get("inputs_scanned")), ""),
        ("skipped", str(len(skipped)), " warn" if skipped else ""),
        ("layers", _e(summary.get("layers", len(layers))), ""),
        ("channels", str(channels), ""),
        (
            "dead",
            f"{_e(summary.get('dead', totals['dead']))} "
            f"<small>{_percent(summary.get('dead_fraction'))}</small>",
            " c-dead-t",
        ),
        ("rare", _e(summary.get("rare", totals["rare"])), " c-rare-t"),
        ("constant", _e(summary.get("constant", totals["constant"])), " c-constant-t"),
        ("healthy", str(totals["healthy"]), " c-healthy-t"),
    ]
    card_html = "".join(
        f'<div class="card{cls}"><b>{value}</b><span>{_e(label)}</span></div>'
        for label, value, cls in cards
    )
    legend = "".join(
        f'<span><i class="sw c-{name}"></i>{_e(name)}</span>' for name in _CLASS_COLOURS
    )
    rows = []
    for pos, (layer, classes, counts) in enumerate(per_layer):
        rows.append(
            f'<tr><td class="num">{_e(layer.get("index"))}</td>'
            f'<td><a href="#layer-{pos}">{_e(layer.get("name"))}</a></td>'
            f"<td>{_e(layer.get('op'))}</td><td>{_e(layer.get('activation') or '—')}</td>"
            f'<td class="num">{len(classes)}</td>'
            + "".join(f'<td class="num">{counts[k]}</td>' for k in _CLASS_COLOURS)
            + f"<td>{_stacked_bar(counts, len(classes))}</td></tr>"
        )
    table = (
        '<table class="list" id="layer-list"><thead><tr><th>#</th><th>layer</th><th>op</th>'
        "<th>activation</th><th>channels</th><th>dead</th><th>constant</th><th>rare</th>"
        "<th>healthy</th><th>share</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    sections = []
    for pos, (layer, classes, counts) in enumerate(per_layer):
        lists = []
        for name in ("dead", "constant", "rare"):
            members = [c for c, k in enumerate(classes) if k == name]
            if members:
                lists.append(
                    f'<p><i class="sw c-{name}"></i><b>{_e(name)}</b> ({len(members)}): '
                    f"{_e(channel_ranges(members, dash='–'))}</p>"
                )
        sections.append(
            f'<section class="layer" id="layer-{pos}" data-pos="{pos}">'
            f'<h2><span class="idx">{_e(layer.get("index"))}</span> {_e(layer.get("name"))}'
            f'</h2><p class="meta"><code>{_e(layer.get("op"))}</code> · activation '
            f"<b>{_e(layer.get('activation') or 'none')}</b> · tensor "
            f"<code>{_e(layer.get('tensor'))}</code> · {len(classes)} channels</p>"
            f"{_stacked_bar(counts, len(classes), 480)}"
            f"{_chart(layer.get('max_abs') or [], classes, 'max_abs', eps, rare)}"
            f"{_chart(layer.get('active_fraction') or [], classes, 'active', eps, rare)}"
            f'<div class="classes">{"".join(lists) or "<p class=muted>all healthy</p>"}</div>'
            '<p class="top"><a href="#top">top ↑</a></p></section>'
        )
    skipped_html = (
        '<h2 class="sec" id="skipped">Skipped inputs</h2><table class="list"><thead><tr>'
        "<th>path</th><th>error</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td><code>{_e(item.get('path'))}</code></td><td>{_e(item.get('error'))}</td></tr>"
            for item in skipped
        )
        + "</tbody></table>"
        if skipped
        else '<p class="muted" id="skipped">No input was skipped.</p>'
    )
    settings = _model_rows(model) + [
        ("providers", _e(", ".join(report.get("providers") or []) or "—")),
        ("eps", _e(_num(report.get("eps"), 3))),
        ("rare below", _e(_num(report.get("rare"), 3)) + " active fraction"),
    ]
    body = (
        f'<header id="top"><h1>Dead filters <small>in {_e(model_name)}</small></h1>'
        f'<p class="muted">fmviz {_e(report.get("fmviz"))}</p></header><main>'
        f'<div class="cards">{card_html}</div>{_dl(settings)}'
        f'<p class="legend">{legend} <span class="muted">a channel counts once, in the '
        "first class that applies: dead (max |a| ≤ eps), constant, rare, healthy</span></p>"
        f'<h2 class="sec">Layers</h2>{table}{"".join(sections)}{skipped_html}</main>'
        '<div id="tip" hidden></div>'
    )
    return _page(f"fmviz · dead filters · {model_name}", body, _scan_data(report), _SCAN_JS, nonce)


# ----------------------------------------------------------------------------- CSS and JS

_CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#d9dee7;--bg:#fff;--soft:#f5f7fa;--accent:#2458b3;
--dead:#d1352b;--constant:#8e5cc4;--rare:#e69b1e;--healthy:#3f9b59}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg)}
header{padding:14px 24px 6px;border-bottom:1px solid var(--line);background:var(--soft)}
header p{margin:2px 0 6px}
h1{font-size:20px;margin:0}h1 small{font-weight:400;color:var(--muted)}
main{padding:8px 24px 40px;max-width:1400px}
h2{font-size:16px;margin:0 0 4px;word-break:break-all}h2.sec{margin:22px 0 8px}
h3{font-size:13px;margin:12px 0 4px;color:var(--muted)}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.muted{color:var(--muted)}.warn{color:var(--dead)}
.summary{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start;margin-top:12px}
.summary>div{flex:1 1 420px;min-width:0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;min-width:0}
details.more{margin-top:10px}summary{cursor:pointer;color:var(--accent)}
table{border-collapse:collapse}
table.kvt th{text-align:left;font-weight:400;color:var(--muted);padding:1px 12px 1px 0;
vertical-align:top}table.kvt td{padding:1px 0;word-break:break-all}
figure{margin:0}figure.input{flex:0 1 auto;text-align:center}
figure.input img{display:block;max-width:320px;max-height:320px;min-width:192px;
image-rendering:pixelated;border:1px solid var(--line)}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
svg.signal{max-width:100%;height:auto;border:1px solid var(--line);background:var(--soft)}
svg.signal polyline{fill:none;stroke:var(--accent);stroke-width:1}
svg.signal text{font-size:10px;fill:var(--muted)}
table.list{width:100%;font-size:13px}
table.list th,table.list td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left}
table.list th{background:var(--soft);font-weight:600}
table.list tr:hover td{background:#f0f4fb}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.views{display:flex;gap:4px;align-items:center;margin:10px 0 6px;flex-wrap:wrap}
.views button{font:inherit;font-size:12px;padding:3px 10px;border:1px solid var(--line);
background:var(--bg);border-radius:4px;cursor:pointer;color:var(--fg)}
.views button[aria-pressed=true]{background:var(--accent);border-color:var(--accent);color:#fff}
section.layer{border-top:1px solid var(--line);padding:16px 0 4px;margin-top:16px}
.idx{display:inline-block;min-width:2.2em;padding:0 6px;margin-right:4px;border-radius:4px;
background:var(--soft);border:1px solid var(--line);text-align:center;font-weight:600}
p.meta{margin:2px 0;color:var(--muted)}p.meta b,p.meta code{color:var(--fg)}
.body{display:flex;gap:20px;align-items:flex-start;flex-wrap:wrap}
figure.pic{position:relative;flex:0 1 auto;max-width:100%;line-height:0}
figure.pic img{max-width:100%;image-rendering:pixelated;border:1px solid var(--line)}
figure.pic img.pickable{cursor:crosshair}
.pick{position:absolute;border:2px solid #ffcc00;box-shadow:0 0 0 1px #000;pointer-events:none}
aside.zoom{flex:0 0 260px;min-height:120px;padding:10px;border:1px solid var(--line);
border-radius:6px;background:var(--soft)}
aside.zoom canvas{display:block;image-rendering:pixelated;margin:0 auto 8px;
border:1px solid var(--line);background:#000}
aside.zoom dl{font-size:13px}
details.channels{margin-top:10px}
table.stats{font-size:12px;margin-top:6px}
table.stats th,table.stats td{padding:2px 10px;border-bottom:1px solid var(--line);text-align:right;
font-variant-numeric:tabular-nums}
table.stats th button{font:inherit;font-weight:600;border:0;background:none;cursor:pointer;
padding:0;color:var(--fg)}
table.stats th[aria-sort=ascending] button::after{content:" ▲"}
table.stats th[aria-sort=descending] button::after{content:" ▼"}
table.stats tr.sel td{background:#fff3bf}table.stats tr.hidden td{color:var(--muted)}
table.stats tbody tr{cursor:pointer}
p.top{text-align:right;margin:4px 0 0;font-size:12px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:14px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px;
background:var(--soft)}
.card b{display:block;font-size:20px}.card span{color:var(--muted);font-size:12px}
.card small{font-size:12px;font-weight:400;color:var(--muted)}
.c-dead-t{border-left:4px solid var(--dead)}.c-rare-t{border-left:4px solid var(--rare)}
.c-constant-t{border-left:4px solid var(--constant)}
.c-healthy-t{border-left:4px solid var(--healthy)}
.card.warn{border-left:4px solid var(--dead)}
.c-dead{fill:var(--dead);background:var(--dead)}.c-rare{fill:var(--rare);background:var(--rare)}
.c-constant{fill:var(--constant);background:var(--constant)}
.c-healthy{fill:var(--healthy);background:var(--healthy)}
i.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
p.legend{margin:10px 0;font-size:13px}
svg.bar{display:block;background:var(--soft);border-radius:2px;margin:6px 0}
.chart{margin:10px 0}.chart-label{font-size:12px;color:var(--muted)}
.plot{display:flex;gap:6px;align-items:stretch}
svg.chan{width:100%;max-width:720px;height:84px;background:var(--soft);border:1px solid var(--line)}
svg.chan line.mark{stroke:#555;stroke-dasharray:3 3;stroke-width:1;vector-effect:non-scaling-stroke}
.ticks{display:flex;flex-direction:column;justify-content:space-between;font-size:11px;
color:var(--muted)}
.classes p{margin:3px 0;font-size:13px;word-break:break-word}
#tip{position:fixed;z-index:9;pointer-events:none;background:#1d2330;color:#fff;font-size:12px;
padding:4px 8px;border-radius:4px;white-space:pre}
"""

# Number formatting shared by both pages' scripts (spliced in at /*@fmt@*/ below).
_FMT_JS = r"""
function fmt(v){
  if (v === null || v === undefined) return "\u2014";
  if (v === 0) return "0";
  var a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}
"""

_RUN_JS = r"""
(function(){
"use strict";
var DATA = JSON.parse(document.getElementById("fmviz-data").textContent);
var ZOOM_BOX = 224, THIN = 32, TARGET = 560, cache = {};
/*@fmt@*/
function pct(v){ return (v === null || v === undefined) ? "\u2014" : (100 * v).toFixed(1) + "%"; }
function picture(url){
  var im = cache[url];
  if (!im){ im = new Image(); im.src = url; cache[url] = im; }
  return im;
}
// t: {x0, y0, w, h, gx, gy, cols, rows, channels}: box k at x0 + col*(w+gx), y0 + row*(h+gy)
function tileAt(t, x, y){
  var col = Math.floor((x - t.x0) / (t.w + t.gx)), row = Math.floor((y - t.y0) / (t.h + t.gy));
  if (col < 0 || row < 0 || col >= t.cols || row >= t.rows) return -1;
  if (x - t.x0 - col * (t.w + t.gx) >= t.w || y - t.y0 - row * (t.h + t.gy) >= t.h) return -1;
  var k = row * t.cols + col;
  return k < t.channels.length ? k : -1;
}
function box(t, k){
  var r = Math.floor(k / t.cols), c = k % t.cols;
  return {x: t.x0 + c * (t.w + t.gx), y: t.y0 + r * (t.h + t.gy), w: t.w, h: t.h};
}
function setup(section){
  var L = DATA.layers[+section.dataset.pos], T = L.tiles;
  var img = section.querySelector("img.map");
  var buttons = section.querySelectorAll(".views button");
  var canvas = section.querySelector("canvas.zoom-tile");
  var statsEl = section.querySelector(".zoom-stats");
  var hint = section.querySelector(".zoom-hint");
  var pick = section.querySelector(".pick");
  var srcOf = {};
  buttons.forEach(function(b){ srcOf[b.dataset.view] = b.dataset.src; });
  var pinned = -1, shown = -1, rows = null, hintText = hint ? hint.textContent : "";
  function hasTiles(){
    return !!(T && canvas && img && T.views.indexOf(img.dataset.view) >= 0);
  }
  function tileSource(){
    return srcOf[hasTiles() ? img.dataset.view : T.views[0]];
  }
  function fit(){
    // Small pictures are scaled up by a whole factor (crisp pixels); grid and heatmap share the
    // grid's factor so the tiles keep their size when switching.
    if (!img.naturalWidth) return;
    var base = (T && T.fit && hasTiles()) ? T.fit : img.naturalWidth;
    var k = Math.max(1, Math.min(16, Math.floor(TARGET / base)));
    img.style.width = (img.naturalWidth * k) + "px";
    img.dataset.fitted = img.getAttribute("src");
  }
  function show(view){
    if (!srcOf[view] || !img) return;
    img.src = srcOf[view];
    img.dataset.view = view;
    if (img.complete) fit();  // from the cache: no flicker at the wrong size
    img.alt = view + " of layer " + L.name;
    buttons.forEach(function(b){
      b.setAttribute("aria-pressed", String(b.dataset.view === view));
    });
    img.classList.toggle("pickable", hasTiles());
    if (hint) hint.textContent = hasTiles() ? hintText : "Switch to " + T.views.join(" or ") +
      " to pick channels.";
    place(pinned);
    if (pinned >= 0) zoom(pinned);
  }
  section.showView = show;
  buttons.forEach(function(b){ b.addEventListener("click", function(){ show(b.dataset.view); }); });
  function place(k){
    if (!pick) return;
    if (k < 0 || !hasTiles() || !img.naturalWidth){ pick.hidden = true; return; }
    var b = box(T, k), s = img.clientWidth / img.naturalWidth;
    pick.hidden = false;
    pick.style.left = (img.offsetLeft + img.clientLeft + b.x * s - 2) + "px";
    pick.style.top = (img.offsetTop + img.clientTop + b.y * s - 2) + "px";
    pick.style.width = (b.w * s + 4) + "px";
    pick.style.height = (b.h * s + 4) + "px";
  }
  function zoom(k){
    if (!canvas) return;
    shown = k;
    if (k < 0){ canvas.hidden = true; statsEl.hidden = true; hint.hidden = false; return; }
    var b = box(T, k), z = Math.min(ZOOM_BOX / b.w, ZOOM_BOX / b.h);
    if (z >= 1) z = Math.floor(z);
    var sy = (b.h * z < THIN) ? Math.ceil(THIN / b.h) : z;  // thin strips (series rows): taller
    var w = Math.max(1, Math.round(b.w * z)), h = Math.max(1, Math.round(b.h * sy));
    var src = tileSource(), im = picture(src);
    canvas.width = w; canvas.height = h;
    canvas.dataset.channel = String(T.channels[k]);
    canvas.dataset.src = src;
    function draw(){
      if (shown !== k || canvas.dataset.src !== src) return;
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = z < 1;  // enlarging: crisp pixels; shrinking: averaged
      ctx.clearRect(0, 0, w, h);
      ctx.drawImage(im, b.x, b.y, b.w, b.h, 0, 0, w, h);
      canvas.dataset.drawn = src;
    }
    if (im.complete && im.naturalWidth) draw();
    else im.addEventListener("load", draw, {once: true});
    canvas.hidden = false; hint.hidden = true; statsEl.hidden = false;
    var c = T.channels[k], range = L.ranges[k] || [null, null];
    var items = [["channel", "channel", String(c)],
                 ["tile", T.unit, (k + 1) + " of " + T.channels.length],
                 ["max", "max", fmt(L.max[c])], ["mean", "mean", fmt(L.mean[c])],
                 ["zeros", "zeros", pct(L.zero[c])],
                 ["range", T.unit + " range", fmt(range[0]) + " \u2026 " + fmt(range[1])]];
    statsEl.textContent = "";
    items.forEach(function(it){
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = it[1]; dd.textContent = it[2]; dd.dataset.key = it[0];
      statsEl.appendChild(dt); statsEl.appendChild(dd);
    });
  }
  function select(k){
    pinned = k; zoom(k); place(k);
    if (rows) rows.forEach(function(tr){
      tr.classList.toggle("sel", k >= 0 && +tr.dataset.tile === k);
    });
  }
  section.selectTile = select;
  function pickRow(k){
    return function(){
      if (!hasTiles()) show(T.views[0]);
      select(k);
      canvas.parentNode.scrollIntoView({block: "nearest"});
    };
  }
  if (img){
    img.addEventListener("load", function(){ fit(); place(pinned); });
    if (img.complete) fit();
    img.classList.toggle("pickable", hasTiles());
  }
  if (img && T && canvas){
    var at = function(ev){
      var r = img.getBoundingClientRect(), s = img.naturalWidth / img.clientWidth;
      return tileAt(T, (ev.clientX - r.left - img.clientLeft) * s,
                       (ev.clientY - r.top - img.clientTop) * s);
    };
    img.addEventListener("mousemove", function(ev){
      if (!hasTiles()) return;
      var k = at(ev);
      if (k >= 0 && k !== shown){ zoom(k); place(k); }
    });
    img.addEventListener("mouseleave", function(){ zoom(pinned); place(pinned); });
    img.addEventListener("click", function(ev){
      if (!hasTiles()) return;
      var k = at(ev);
      if (k >= 0) select(k === pinned ? -1 : k);
    });
    window.addEventListener("resize", function(){ place(pinned); });
  }
  var details = section.querySelector("details.channels");
  if (details){
    var build = function(){
      if (rows) return;
      var tbody = details.querySelector("tbody"), tileOf = {};
      if (T) T.channels.forEach(function(c, k){ tileOf[c] = k; });
      rows = [];
      for (var c = 0; c < L.max.length; c++){
        var tr = document.createElement("tr"), k = (c in tileOf) ? tileOf[c] : -1;
        tr.dataset.channel = c; tr.dataset.tile = k;
        tr.sortValues = {channel: c, tile: k < 0 ? Infinity : k,
                         max: L.max[c], mean: L.mean[c], zero: L.zero[c]};
        [String(c), k < 0 ? "\u2014" : String(k + 1), fmt(L.max[c]), fmt(L.mean[c]), pct(L.zero[c])]
          .forEach(function(t){
            var td = document.createElement("td");
            td.textContent = t;
            tr.appendChild(td);
          });
        if (k < 0) tr.classList.add("hidden");
        else if (canvas) tr.addEventListener("click", pickRow(k));
        if (k === pinned) tr.classList.add("sel");
        rows.push(tr); tbody.appendChild(tr);
      }
    };
    details.addEventListener("toggle", function(){ if (details.open) build(); });
    if (details.open) build();
    details.querySelectorAll("th").forEach(function(th){
      th.querySelector("button").addEventListener("click", function(){
        build();
        var key = th.dataset.key, dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        if (!th.hasAttribute("aria-sort") && key !== "channel" && key !== "tile") dir = -1;
        details.querySelectorAll("th").forEach(function(o){ o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
        var val = function(tr){
          var v = tr.sortValues[key];
          return (v === null || v === undefined) ? -Infinity : v;
        };
        rows.sort(function(a, b){
          var d = val(a) - val(b);
          return (d ? d * dir : a.sortValues.channel - b.sortValues.channel) || 0;
        });
        var tbody = details.querySelector("tbody");
        rows.forEach(function(tr){ tbody.appendChild(tr); });
      });
    });
  }
}
document.querySelectorAll("section.layer").forEach(setup);
var all = document.getElementById("all-views");
if (all) all.querySelectorAll("button").forEach(function(b){
  b.addEventListener("click", function(){
    all.querySelectorAll("button").forEach(function(o){
      o.setAttribute("aria-pressed", String(o === b));
    });
    document.querySelectorAll("section.layer").forEach(function(s){
      if (s.showView) s.showView(b.dataset.view);
    });
  });
});
})();
""".replace("/*@fmt@*/\n", _FMT_JS.lstrip("\n"))

_SCAN_JS = r"""
(function(){
"use strict";
var DATA = JSON.parse(document.getElementById("fmviz-data").textContent);
var tip = document.getElementById("tip");
/*@fmt@*/
document.querySelectorAll("svg.chan").forEach(function(svg){
  var L = DATA.layers[+svg.closest("section.layer").dataset.pos];
  var n = L.classes.length;
  svg.addEventListener("mousemove", function(ev){
    var r = svg.getBoundingClientRect();
    var c = Math.min(n - 1, Math.max(0, Math.floor((ev.clientX - r.left) / r.width * n)));
    var active = L.active[c];
    active = (active === null || active === undefined) ? "\u2014" : (100 * active).toFixed(2) + "%";
    tip.textContent = "channel " + c + " \u00b7 " + L.classes[c] +
      "\nmax |a| " + fmt(L.max_abs[c]) + "\nactive " + active;
    tip.dataset.channel = String(c);
    tip.hidden = false;
    tip.style.left = (ev.clientX + 12) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
  });
  svg.addEventListener("mouseleave", function(){ tip.hidden = true; });
});
})();
""".replace("/*@fmt@*/\n", _FMT_JS.lstrip("\n"))
