"""The exemplar report (``"schema": "fmviz/exemplars/1"``) and its HTML page.

:func:`build_report` turns an :class:`~fmviz.exemplars.ExemplarResult` and its located winners
into the dict of SPEC.md; :func:`page_html` is the self-contained page ``fmviz exemplars
--html`` writes: the layers' exemplar pictures as crops, and for a clicked crop the whole input
with the box and that channel's map for it. The page holds everything as ``data:`` URIs (crops
as PNG, inputs as JPEG thumbnails); as the gallery, every string is escaped, the data travels as
JSON that cannot close its script element, and the script only uses ``textContent``.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence

import numpy as np

from .. import __version__
from ..render.png import encode_png
from .gallery import _asset, _e, _num, _script_json

SCHEMA = "fmviz/exemplars/1"


def _number(value: float):
    """An int where the value is whole, else a float; None for non-finite."""
    if value is None or not np.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else float(value)


def field_json(probe) -> tuple[list | None, list | None]:
    """``receptive_field`` and ``input_stride`` of a probe (null unless exactly known)."""
    from ..probes import field_sizes

    return field_sizes(probe.field)


def build_report(model_json: dict, result, located, shown, files: Mapping[int, str]) -> dict:
    """The report dict. ``located[layer][channel]`` are the winners with boxes (see
    :func:`fmviz.exemplars.locate`); ``shown[layer]`` the channels drawn, most selective
    first; ``files[layer]`` the picture's file name."""
    layers = []
    for at, probe in enumerate(result.probes):
        receptive, stride = field_json(probe)
        top = result.tops[at]
        selectivity = top.selectivity()
        exemplars = []
        for per_channel in located[at]:
            exemplars.append([
                {
                    "path": entry.winner.path,
                    "score": _number(entry.winner.score) if np.isfinite(entry.winner.score)
                    else None,
                    "position": list(entry.winner.position),
                    "box": entry.box,
                    **({"row": entry.winner.row} if entry.winner.row else {}),
                }
                for entry in per_channel
            ])
        layers.append({
            "index": probe.index,
            "name": probe.name,
            "op": probe.op,
            "tensor": probe.tensor,
            "activation": probe.activation,
            "channels": top.channels,
            "receptive_field": receptive,
            "input_stride": stride,
            "shown_channels": list(shown[at]),
            "selectivity": [round(float(s), 4) for s in selectivity],
            "files": {"exemplars": files[at]} if at in files else {},
            "exemplars": exemplars,
        })
    return {
        "schema": SCHEMA,
        "fmviz": __version__,
        "model": model_json,
        "providers": list(result.providers),
        "stage": result.stage,
        "top": result.top,
        "score": result.score,
        "inputs_scanned": result.inputs_scanned,
        "skipped": list(result.skipped),
        "layers": layers,
    }


# ----------------------------------------------------------------------------- HTML


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def page_html(report: dict, crops) -> str:
    """The page: per layer a row per shown channel with its crops; a click shows the whole
    input with the box and the channel's map for that input."""
    nonce = secrets.token_urlsafe(16)
    thumbs: dict[str, int] = {}
    inputs: list[str] = []
    for path, data in sorted(crops.thumbnails.items()):
        thumbs[path] = len(inputs)
        inputs.append(_data_uri("image/jpeg", data))
    details: list[dict] = []
    sections = []
    nav = []
    for at, layer in enumerate(report["layers"]):
        anchor = f"layer-{at}"
        nav.append(f'<li><a href="#{anchor}">{_e(layer["index"])} {_e(layer["name"])}</a>'
                   f' <span class="muted">{_e(layer["channels"])} ch</span></li>')
        field = layer["receptive_field"]
        stride = layer["input_stride"]
        about = (f'receptive field {"x".join(map(str, field))}, stride '
                 f'{"x".join(map(str, stride))} on the input' if field else
                 "receptive field not exactly known (crops show the whole input where unknown)")
        rows = []
        for c in layer["shown_channels"]:
            cells = []
            for rank, entry in enumerate(layer["exemplars"][c]):
                tile = crops.tiles.get((at, c, rank))
                if tile is None:
                    continue
                detail = {
                    "layer": layer["name"], "channel": c, "rank": rank + 1,
                    "path": entry["path"], "score": entry["score"], "box": entry["box"],
                    "position": entry["position"],
                    "input": thumbs.get(entry["path"]),
                }
                geometry = crops.located[at][c][rank].geometry
                if geometry is not None:
                    detail["original"] = list(geometry.original)
                if (at, c, rank) in crops.maps:
                    detail["map"] = _data_uri("image/png", crops.maps[(at, c, rank)])
                details.append(detail)
                source = _data_uri("image/png", encode_png(tile))
                cells.append(
                    f'<figure class="crop" data-detail="{len(details) - 1}" tabindex="0">'
                    f'<img src="{source}" alt="channel {c} #{rank + 1}"'
                    f' title="{_e(entry["path"])}"><figcaption>{_num(entry["score"])}'
                    "</figcaption></figure>"
                )
            rows.append(f'<div class="exrow"><div class="exlabel">ch {c}</div>{"".join(cells)}'
                        "</div>")
        sections.append(
            f'<section class="layer" id="{anchor}"><h2>{_e(layer["index"])} {_e(layer["name"])}'
            f' <span class="muted">{_e(layer["op"])} {_e(layer["activation"] or "")}</span></h2>'
            f'<p class="muted">{_e(about)}; {len(layer["shown_channels"])} of '
            f'{_e(layer["channels"])} channels, most selective first</p>'
            f'{"".join(rows)}</section>'
        )
    skipped = report["skipped"]
    body = (
        '<header class="page"><h1>Exemplars</h1>'
        f'<p>{_e(report["model"].get("path", ""))}: top {_e(report["top"])} of '
        f'{_e(report["inputs_scanned"])} inputs per channel by {_e(report["score"])} '
        f'(stage {_e(report["stage"])}), {len(skipped)} skipped</p></header>'
        f'<nav class="layers"><ul>{"".join(nav)}</ul></nav>'
        f'<main>{"".join(sections)}</main>'
        '<div id="viewer" class="viewer" hidden><div class="viewer-box">'
        '<button id="viewer-close" type="button">close</button>'
        '<p id="viewer-title"></p><div class="viewer-pics">'
        '<div class="viewer-input"><img id="viewer-input" alt="input"><div id="viewer-rect">'
        '</div></div><img id="viewer-map" alt="channel map"></div></div></div>'
    )
    csp = ("default-src 'none'; img-src data:; "
           f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
           "base-uri 'none'; form-action 'none'")
    data = {"inputs": inputs, "details": details}
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{_e("fmviz exemplars")}</title>\n'
        f'<style nonce="{nonce}">{_asset("gallery.css")}{_asset("exemplars.css")}</style>\n'
        f"</head>\n<body>\n{body}\n"
        f'<script type="application/json" id="fmviz-data">{_script_json(data)}</script>\n'
        f'<script nonce="{nonce}">{_asset("exemplars.js")}</script>\n</body>\n</html>\n'
    )


def write_html(path, report: dict, crops) -> None:
    from ..io import atomic_write_text

    atomic_write_text(path, page_html(report, crops))


def exemplar_files(report: dict) -> Sequence[str]:
    return [layer["files"]["exemplars"] for layer in report["layers"] if layer["files"]]
