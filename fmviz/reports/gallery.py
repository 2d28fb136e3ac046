"""Self-contained HTML pages: a run's gallery (``index.html``) and a dead-filter scan report.

Each page is one file that opens from ``file://`` with no server and no network: CSS and
JavaScript (package data in ``assets/``, linted and tested as what they are) are inlined when the
page is written, pictures are the run's PNGs referenced by their plain file names in the
same folder. Safety, in layers:

- every string from the model or the manifest goes through :func:`html.escape`;
- data for the scripts is JSON inside ``<script type="application/json">`` with ``<``, ``>``
  and ``&`` written as ``\\u003c`` ... so no name can close the script element;
- the scripts only ever put that data in the page with ``textContent``, never ``innerHTML``;
- a Content-Security-Policy with a per-page nonce runs only this module's own script and style,
  and allows no request but images from the page's own folder.

Public functions: :func:`write_run_page` (called by ``fmviz run --html``),
:func:`scan_page_html` (the page ``fmviz dead-filters --report scan.html`` writes, through
:mod:`fmviz.reports.deadfilters`) and :func:`run_page_html`, which return the page text.
"""

from __future__ import annotations

import functools
import html
import json
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from ..io import atomic_write_text, ensure_dir
from ..text import channel_ranges, format_shape, percent

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
    "inactive": "#2b6fd1",
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


@functools.lru_cache(maxsize=8)
def _asset(name: str) -> str:
    """A CSS or JavaScript file shipped in ``fmviz/reports/assets`` (inlined into each page, so
    pages stay self-contained)."""
    return (resources.files(__package__) / "assets" / name).read_text(encoding="utf-8")


def _script(name: str) -> str:
    """A page script with the shared number formatting (``format.js``) in front of it."""
    return _asset("format.js") + _asset(name)


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
        f'<title>{_e(title)}</title>\n<style nonce="{nonce}">{_asset("gallery.css")}</style>\n'
        "</head>\n"
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


def _side_index(layers: Sequence[Mapping]) -> str:
    """The layer index that stays in view: a small picture, the name and the channel count."""
    items = []
    for pos, layer in enumerate(layers):
        files = layer.get("files") or {}
        thumb = next((files[v] for v in ("heatmap", "grid", "series") if files.get(v)), None)
        picture = (f'<img src="{_src(thumb)}" alt="" loading="lazy">' if thumb
                   else '<i class="nopic"></i>')
        name = str(layer.get("name") or "")
        short = name if len(name) <= 22 else "…" + name[-21:]  # the tail tells layers apart
        items.append(
            f'<li><a href="#layer-{pos}" data-pos="{pos}" title="{_e(name)}">{picture}'
            f'<span class="nm"><b>{_e(layer.get("index"))}</b> {_e(short)}</span>'
            f'<span class="ch">{_e(layer.get("channels"))} ch</span></a></li>'
        )
    return (
        '<nav class="index" aria-label="layers"><p class="muted">Layers</p>'
        f"<ol>{''.join(items)}</ol></nav>"
    )


def _outputs_section(outputs: Sequence[Mapping] | None) -> str:
    """The model's own outputs: shape and range, and the top five of a class output."""
    if not outputs:
        return ""
    rows = []
    for out in outputs:
        top = out.get("top")
        listed = ""
        if top:
            listed = '<ol class="top5">' + "".join(
                f'<li><span class="cls">{_e(t.get("label") or "class " + str(t.get("class")))}'
                f'</span>{" <small>#" + _e(t.get("class")) + "</small>" if t.get("label") else ""}'
                f' <span class="num">{_num(t.get("value"))}</span></li>'
                for t in top
            ) + "</ol>"
        rows.append(
            f'<tr><td><code>{_e(out.get("name"))}</code></td>'
            f'<td class="num">{_e(format_shape(out.get("shape")))}</td>'
            f'<td class="num">{_num(out.get("min"))} … {_num(out.get("max"))}</td>'
            f"<td>{listed}</td></tr>"
        )
    return (
        '<h2 class="sec" id="outputs">Model outputs</h2><table class="list outputs"><thead><tr>'
        "<th>output</th><th>shape</th><th>range</th><th>top five</th></tr></thead>"
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
        'its channel enlarged.</p><dl class="zoom-stats kv" hidden></dl>'
        + ('<canvas class="zoom-overlay" width="1" height="1" hidden></canvas>'
           '<p class="overlay-note muted" hidden></p>' if (layer.get("files") or {}).get("overlay")
           else "")
        + "</aside>"
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
        '<th scope="col" data-key="min"><button type="button">min</button></th>'
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
                    "label": [int(v) for v in grid.get("label_box") or []] or None,
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
                "min": _rounded(cs.get("min")),
                "max": _rounded(cs.get("max")),
                "overlay": bool((layer.get("files") or {}).get("overlay")),
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
        f'<div class="page">{_side_index(layers)}'
        f'<main><div class="summary"><div>{_dl(run_rows)}{details}</div>'
        f"{_input_figure(manifest, picture, signal)}</div>"
        f"{_outputs_section(manifest.get('outputs'))}"
        f'<h2 class="sec">Layers</h2>{_layer_list(layers)}{global_switch}'
        + "".join(_layer_section(pos, layer) for pos, layer in enumerate(layers))
        + "</main></div>"
    )
    data = _run_data(manifest)
    data["picture"] = picture
    return _page(title, body, data, _script("run.js"), nonce)


# ----------------------------------------------------------------------------- scan page


def _channel_classes(layer: Mapping) -> list[str]:
    """One class per channel, the first that applies: dead, inactive, constant, rare, healthy."""
    n = int(layer.get("channels") or len(layer.get("max_abs") or []))
    classes = ["healthy"] * n
    for name in ("rare", "constant", "inactive", "dead"):  # later wins
        for c in layer.get(name) or []:
            if isinstance(c, int) and 0 <= c < n:
                classes[c] = name
    return classes


def _stacked_bar(counts: Mapping[str, int], total: int, width: int = 220) -> str:
    if total <= 0:
        return ""
    x = 0.0
    rects = []
    for name in ("dead", "inactive", "constant", "rare", "healthy"):
        n = counts.get(name, 0)
        if not n:
            continue
        w = width * n / total
        rects.append(
            f'<rect class="c-{name}" x="{x:.2f}" y="0" width="{w:.2f}" height="14">'
            f"<title>{n} {name} ({percent(n, total)})</title></rect>"
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
        ("inactive", _e(summary.get("inactive", totals["inactive"])), " c-inactive-t"),
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
        "<th>activation</th><th>channels</th><th>dead</th><th>inactive</th><th>constant</th>"
        "<th>rare</th>"
        "<th>healthy</th><th>share</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    sections: list[str] = []
    healthy_sections: list[str] = []
    # layers with dead, inactive, constant or rare channels first; the healthy ones folded
    order = sorted(range(len(per_layer)), key=lambda p: (per_layer[p][2]["healthy"]
                                                         == len(per_layer[p][1]), p))
    for pos in order:
        layer, classes, counts = per_layer[pos]
        lists = []
        for name in ("dead", "inactive", "constant", "rare"):
            members = [c for c, k in enumerate(classes) if k == name]
            if members:
                lists.append(
                    f'<p><i class="sw c-{name}"></i><b>{_e(name)}</b> ({len(members)}): '
                    f"{_e(channel_ranges(members, dash='–'))}</p>"
                )
        target = healthy_sections if counts["healthy"] == len(classes) else sections
        target.append(
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
    healthy_html = (
        f'<details class="healthy"><summary>{len(healthy_sections)} healthy layer(s)</summary>'
        f'{"".join(healthy_sections)}</details>' if healthy_sections else ""
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
        "first class that applies: dead (max |a| ≤ eps), inactive (max ≤ eps under an "
        "activation that rests at or below 0), constant, rare, healthy</span></p>"
        f'<h2 class="sec">Layers</h2>{table}{"".join(sections)}{healthy_html}{skipped_html}'
        "</main>"
        '<div id="tip" hidden></div>'
    )
    return _page(f"fmviz · dead filters · {model_name}", body, _scan_data(report),
                 _script("scan.js"), nonce)
