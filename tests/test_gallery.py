"""fmviz.reports.gallery: the run page (``fmviz run --html``) and the dead-filter page.

Two kinds of test: plain ones that parse the HTML (escaping, no URLs, files that exist), and
``browser`` ones that open the pages from file:// in a headless Chromium (see tests/browser.py;
skipped with a reason where Playwright or Chromium is missing).
"""

from __future__ import annotations

import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmviz import render
from fmviz.cli import main
from fmviz.reports import gallery
from fmviz.reports.deadfilters import write_reports
from tests import browser, models

NASTY = "conv1\"'<script>alert('x')</script>&amp;</textarea>"
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "srcset", "data", "xlink:href"}


# ----------------------------------------------------------------------------- helpers


class Page(HTMLParser):
    """The parts of a page the tests look at: tags, URL attributes, scripts, text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.urls: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.text: list[str] = []
        self._script: dict | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self.urls += [v for k, v in attrs if k in URL_ATTRIBUTES and v is not None]
        if tag == "script":
            self._script = attributes

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self.scripts.append((self._script, data))
        else:
            self.text.append(data)

    def data(self) -> dict:
        (payload,) = [s for a, s in self.scripts if a.get("type") == "application/json"]
        return json.loads(payload)


def picture(path: Path, size=(40, 30)) -> Path:
    """An RGB picture with structure (gradients and a square), so maps are not flat."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 8 + y // 8) % 2) * 200], axis=-1)
    rgb[h // 4 : h // 2, w // 4 : w // 2] = 255
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


def series_csv(path: Path, length: int = 32) -> Path:
    t = np.arange(length)
    rows = ["a,b"] + [f"{np.sin(i / 3):.4f},{(i % 7) / 7 - 0.5:.4f}" for i in t]
    path.write_text("\n".join(rows) + "\n")
    return path


def run_html(tmp: Path, model, *extra: str, name="pic.png") -> tuple[Path, dict]:
    model_path = models.save(model, tmp / "model.onnx")
    pic = series_csv(tmp / name) if name.endswith(".csv") else picture(tmp / name)
    out = tmp / "out"
    code = main(["run", str(model_path), str(pic), "-o", str(out), "--html", "-q", *extra])
    assert code == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder, json.loads((folder / "manifest.json").read_text())


def nasty_model():
    model = models.conv_bn_relu()
    model.graph.node[0].name = NASTY  # conv1 -> the layer's name
    return model


def round6(value):
    return None if value is None else float(f"{value:.6g}")


def scan_report(tmp: Path | None = None) -> dict:
    """A dead-filter report in the contract's schema, with a name that tries to break out."""
    rng = np.random.default_rng(3)
    layers = []
    for i, (name, channels) in enumerate([("conv1", 8), (NASTY, 24), ("conv3", 300)]):
        max_abs = np.abs(rng.standard_normal(channels)) * 3
        active = rng.uniform(0, 1, channels)
        dead = list(range(0, channels, 5))
        max_abs[dead] = 0
        active[dead] = 0
        rare = [c for c in range(channels) if c not in dead and active[c] < 0.1]
        constant = [c for c in (1, 2) if c not in dead]
        layers.append(
            {
                "index": i,
                "name": name,
                "op": "Conv",
                "tensor": f"{name}_out",
                "activation": "Relu",
                "channels": channels,
                "dead": dead,
                "rare": rare,
                "constant": constant,
                "max_abs": max_abs.tolist(),
                "active_fraction": active.tolist(),
            }
        )
    channels = sum(layer["channels"] for layer in layers)
    dead = sum(len(layer["dead"]) for layer in layers)
    return {
        "schema": "fmviz/dead-filters/1",
        "fmviz": "0.1.0",
        "model": {"path": "models/m.onnx", "sha256": "ab" * 32, "opset": 17, "inputs": []},
        "providers": ["CPUExecutionProvider"],
        "eps": 1e-6,
        "rare": 0.1,
        "inputs_scanned": 12,
        "skipped": [{"path": "bad <img src=x onerror=alert(1)>.png", "error": "not an image"}],
        "layers": layers,
        "summary": {
            "layers": len(layers),
            "channels": channels,
            "dead": dead,
            "rare": sum(len(layer["rare"]) for layer in layers),
            "constant": sum(len(layer["constant"]) for layer in layers),
            "dead_fraction": dead / channels,
        },
    }


def assert_self_contained(text: str, folder: Path | None = None) -> Page:
    page = Page(text)
    assert "http://" not in text and "https://" not in text
    for url in page.urls:
        assert not re.match(r"\s*([a-z][a-z0-9+.-]*:|//)", url, re.I), url  # relative only
        if url.startswith("#"):
            assert url[1:] and any(a.get("id") == url[1:] for _, a in page.tags), url
        elif folder is not None:
            assert "/" not in url and (folder / url).is_file(), url
    assert not [t for t, a in page.tags if t == "link"]
    assert all("src" not in attrs for attrs, _ in page.scripts)
    assert "@import" not in text and "url(" not in text
    (csp,) = [
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert [a.get("nonce") for a, _ in page.scripts if a.get("type") != "application/json"] == [
        nonce
    ]
    return page


# ----------------------------------------------------------------------------- plain tests


def test_run_html_writes_page_and_input_picture(tmp_path):
    folder, manifest = run_html(tmp_path, models.conv_bn_relu())
    text = (folder / "index.html").read_text()
    page = assert_self_contained(text, folder)
    with Image.open(folder / "input.png") as im:
        assert im.size == (40, 30) and im.mode == "RGB"  # the original picture, not resized
    sources = {a["src"] for t, a in page.tags if t == "img"}
    assert "input.png" in sources
    for layer in manifest["layers"]:
        assert layer["files"]["grid"] in sources  # the first view is shown
        buttons = {
            a["data-view"]: a["data-src"]
            for t, a in page.tags
            if t == "button" and "data-src" in a and a["data-src"] in layer["files"].values()
        }
        assert buttons == layer["files"]  # every picture can be switched to
    data = page.data()
    assert [d["name"] for d in data["layers"]] == [layer["name"] for layer in manifest["layers"]]
    grid = manifest["layers"][0]["grid"]
    tiles = data["layers"][0]["tiles"]
    assert tiles["channels"] == grid["channels"] and tiles["views"] == ["grid", "heatmap"]
    for k in range(len(grid["channels"])):  # the page's boxes are GridLayout.box's
        r, c = divmod(k, tiles["cols"])
        x, y = (
            tiles["x0"] + c * (tiles["w"] + tiles["gx"]),
            tiles["y0"] + r * (tiles["h"] + tiles["gy"]),
        )
        layout = render.GridLayout(**{**grid, "channels": tuple(grid["channels"])})
        assert (x, y, tiles["w"], tiles["h"]) == layout.box(k)
    assert list(folder.glob(".*.part")) == []


def test_run_without_html_writes_no_page(tmp_path):
    model_path = models.save(models.conv_bn_relu(), tmp_path / "m.onnx")
    assert (
        main(
            [
                "run",
                str(model_path),
                str(picture(tmp_path / "p.png")),
                "-o",
                str(tmp_path / "out"),
                "-q",
            ]
        )
        == 0
    )
    assert not (tmp_path / "out" / "p" / "index.html").exists()
    assert not (tmp_path / "out" / "p" / "input.png").exists()


def test_names_and_paths_are_escaped(tmp_path):
    folder, manifest = run_html(tmp_path, nasty_model(), name="a \"q\" 'b' <i>.png")
    text = (folder / "index.html").read_text()
    page = assert_self_contained(text, folder)
    assert "<script>alert" not in text and "</textarea>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;amp;" in text
    assert "<i>" not in text
    # one JSON block and one script of our own: the name opened no element
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", None]
    json_block = page.scripts[0][1]
    assert "</" not in json_block and "<" not in json_block
    assert page.data()["layers"][0]["name"] == NASTY
    assert NASTY in "".join(page.text)  # shown as text, exactly
    assert manifest["input"]["path"] in "".join(page.text)


def test_script_json_cannot_close_its_element():
    data = {"a": "</script><!-- \u2028 & <b>", "b": [1.5, None]}
    text = gallery._script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == data


def test_run_page_html_without_picture_or_tiles():
    manifest = {
        "fmviz": "0.1.0",
        "model": {"path": "m.onnx", "sha256": "00" * 32, "opset": 17, "inputs": []},
        "input": {"path": "x.npy", "kind": "tensor", "tensor_shape": [1, 2, 8]},
        "layers": [
            {
                "index": 0,
                "name": "c",
                "op": "Conv",
                "channels": 2,
                "shape": [1, 2, 8],
                "files": {"series": "000-c.series.png"},
                "channel_stats": {
                    "max": [1.0, float("nan")],
                    "mean": [0.5, 0.1],
                    "zero_fraction": [0.0, 1.0],
                },
            },
        ],
    }
    text = gallery.run_page_html(manifest)
    page = assert_self_contained(text)
    assert "no picture" in text
    assert "000-c.series.png" in {a.get("src") for t, a in page.tags if t == "img"}
    assert page.data()["layers"][0]["max"] == [1.0, None]  # non-finite becomes null, not NaN
    assert not [a for t, a in page.tags if t == "canvas"]  # no layout: nothing to enlarge


def test_series_signal_is_drawn_inline(tmp_path):
    signal = np.stack([np.sin(np.linspace(0, 20, 5000)), np.linspace(-1, 1, 5000)])
    manifest = {"model": {}, "input": {"path": "s.csv", "kind": "series"}, "layers": []}
    page_path = gallery.write_run_page(tmp_path, manifest, signal=signal)
    text = page_path.read_text()
    assert_self_contained(text, tmp_path)
    polylines = re.findall(r'<polyline points="([^"]+)"', text)
    assert len(polylines) == 2
    for points in polylines:
        xy = np.array([p.split(",") for p in points.split()], dtype=float)
        assert len(xy) <= gallery._SIGNAL_POINTS
        assert xy[:, 0].min() == 0 and np.all(np.diff(xy[:, 0]) >= 0)
    assert not (tmp_path / "input.png").exists()


def test_series_run_page_has_signal_and_rows(tmp_path):
    folder, manifest = run_html(tmp_path, models.conv1d(), name="walk.csv")
    text = (folder / "index.html").read_text()
    page = assert_self_contained(text, folder)
    assert len(re.findall(r"<polyline ", text)) == 2  # the two input columns, inline
    assert not (folder / "input.png").exists()
    for layer, data in zip(manifest["layers"], page.data()["layers"], strict=True):
        assert set(layer["files"]) == {"series"}
        rows = data["tiles"]
        assert rows["views"] == ["series"] and rows["channels"] == layer["shown_channels"]
        assert rows["y0"] == layer["series_layout"]["strip_top"]


def test_scan_page_counts_escapes_and_lists_skipped(tmp_path):
    report = scan_report()
    path = tmp_path / "deep" / "er" / "scan.html"
    write_reports(report, [(path, "html")])  # as `dead-filters --report` writes it
    text = path.read_text()
    page = assert_self_contained(text)
    assert "<script>alert" not in text and "<img src=x" not in text
    body = "".join(page.text)
    assert "bad <img src=x onerror=alert(1)>.png" in body and "not an image" in body
    data = page.data()
    for layer, shown in zip(report["layers"], data["layers"], strict=True):
        classes = shown["classes"]
        assert len(classes) == layer["channels"]
        assert {c for c, k in enumerate(classes) if k == "dead"} == set(layer["dead"])
        constant = set(layer["constant"]) - set(layer["dead"])
        assert {c for c, k in enumerate(classes) if k == "constant"} == constant
        rare = set(layer["rare"]) - set(layer["dead"]) - constant
        assert {c for c, k in enumerate(classes) if k == "rare"} == rare
    # one stacked bar per layer in the table and one per section, titled with the counts
    first = report["layers"][0]
    assert f"<title>{len(first['dead'])} dead (" in text
    assert len(re.findall(r'<svg class="chan"', text)) == 2 * len(report["layers"])
    assert list(path.parent.glob(".*.part")) == []


def test_channel_ranges_text():
    from fmviz.text import channel_ranges

    assert channel_ranges([7, 0, 1, 2, 5, 8], dash="–") == "0–2, 5, 7–8"
    assert channel_ranges([]) == ""
    assert channel_ranges(range(30), limit=24) == "0-29"
    assert channel_ranges([0, 2, 4, 6], limit=2) == "0, 2, ... (4 in all)"


# ----------------------------------------------------------------------------- browser tests


@pytest.fixture(scope="module")
def chromium():
    with browser.launch() as instance:
        yield instance


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    # conv1 has 8 channels; showing 5 makes tile numbers and channel numbers differ.
    folder, manifest = run_html(
        tmp_path_factory.mktemp("run"), models.conv_bn_relu(size=24), "--max-channels", "5"
    )
    return folder, manifest


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    yield page
    context.close()


def open_page(page, path: Path):
    watch = browser.Watch.attach(page)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return watch


def image_width(img) -> int:
    """naturalWidth once the picture has loaded or failed (lazy ones are scrolled to first) and,
    for a layer's picture, once the page has sized it (``data-fitted``)."""
    return img.evaluate(
        """async (img) => {
            img.scrollIntoView();
            if (!img.complete) await new Promise((done) => {
                img.addEventListener("load", done, {once: true});
                img.addEventListener("error", done, {once: true});
            });
            for (let i = 0; i < 100 && img.naturalWidth && img.classList.contains("map")
                            && img.dataset.fitted !== img.getAttribute("src"); i++)
                await new Promise((frame) => requestAnimationFrame(frame));
            return img.naturalWidth;
        }"""
    )


def shows(element, attribute: str, expected: str, timeout_ms: int = 5000) -> str | None:
    """The element's attribute, polled until it equals ``expected`` or ``timeout_ms`` passed:
    the page reacts to input in its own time, a busy CI machine can lag a frame or two."""
    element.evaluate(
        """(e, [name, value, ms]) => new Promise((done) => {
            const end = performance.now() + ms;
            const poll = () => (e.getAttribute(name) === value || performance.now() > end)
                ? done() : requestAnimationFrame(poll);
            poll();
        })""",
        [attribute, expected, timeout_ms],
    )
    return element.get_attribute(attribute)


def tile_point(page, section: str, grid: dict, k: int) -> dict:
    """Where tile ``k`` shows on screen, relative to the picture's padding box.

    Waits for the picture first: after a view switch it loads, then is resized to fit.
    """
    img = page.query_selector(f"{section} img.map")
    assert image_width(img) > 0
    scale = img.evaluate("i => i.clientWidth / i.naturalWidth")
    r, c = divmod(k, grid["cols"])
    x = grid["gap"] + c * (grid["tile_width"] + grid["gap"]) + grid["tile_width"] / 2
    y = grid["gap"] + r * (grid["tile_height"] + grid["gap"]) + grid["tile_height"] / 2
    return {"x": x * scale, "y": y * scale}


@pytest.mark.browser
def test_run_page_loads_clean_and_every_picture_loads(page, run_folder):
    folder, manifest = run_folder
    watch = open_page(page, folder / "index.html")
    assert image_width(page.query_selector("#input-picture")) == 40
    for pos, layer in enumerate(manifest["layers"]):
        section = f"#layer-{pos}"
        for view, name in layer["files"].items():
            page.click(f"{section} .views button[data-view={view}]")
            img = page.query_selector(f"{section} img.map")
            assert img.get_attribute("src") == name
            with Image.open(folder / name) as png:
                assert image_width(img) == png.width, name
    # the switch above all layers changes every layer at once
    page.click("#all-views button[data-view=heatmap]")
    views = page.eval_on_selector_all("img.map", "l => l.map(i => i.dataset.view)")
    assert views == ["heatmap"] * len(manifest["layers"])
    page.click("a[href='#layer-1']")
    assert page.evaluate("location.hash") == "#layer-1"
    assert watch.problems() == {}


@pytest.mark.browser
def test_clicking_a_tile_shows_that_channel_enlarged_with_its_stats(page, run_folder):
    folder, manifest = run_folder
    layer = manifest["layers"][0]
    grid = layer["grid"]
    k = next(k for k, c in enumerate(grid["channels"]) if c != k)  # tile k is not channel k
    channel = grid["channels"][k]
    watch = open_page(page, folder / "index.html")
    page.click("#layer-0 img.map", position=tile_point(page, "#layer-0", grid, k))
    canvas = page.query_selector("#layer-0 canvas.zoom-tile")
    assert canvas.is_visible()
    assert shows(canvas, "data-channel", str(channel)) == str(channel)
    # drawn, and from the grid picture
    page.wait_for_function("c => c.dataset.drawn === c.dataset.src", arg=canvas)
    assert shows(canvas, "data-src", layer["files"]["grid"]) == layer["files"]["grid"]
    stats = dict(
        page.eval_on_selector_all(
            "#layer-0 .zoom-stats dd", "l => l.map(d => [d.dataset.key, d.textContent])"
        )
    )
    assert stats["channel"] == str(channel)
    assert stats["tile"] == f"{k + 1} of {len(grid['channels'])}"
    cs = layer["channel_stats"]
    assert math.isclose(float(stats["max"]), cs["max"][channel], rel_tol=1e-3, abs_tol=1e-9)
    assert math.isclose(float(stats["mean"]), cs["mean"][channel], rel_tol=1e-3, abs_tol=1e-9)
    assert float(stats["zeros"].rstrip("%")) == pytest.approx(
        100 * cs["zero_fraction"][channel], abs=0.06
    )

    # What the canvas shows is that tile of the grid PNG, enlarged without smoothing.
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"), dtype=np.int16)
    with Image.open(folder / layer["files"]["grid"]) as png:
        grid_rgb = png.convert("RGB")
    width, height = (int(canvas.get_attribute(a)) for a in ("width", "height"))
    zoom = width // grid["tile_width"]
    assert zoom >= 2 and (width, height) == (grid["tile_width"] * zoom, grid["tile_height"] * zoom)

    def error(tile_index: int) -> float:
        x0 = grid["gap"] + (tile_index % grid["cols"]) * (grid["tile_width"] + grid["gap"])
        y0 = grid["gap"] + (tile_index // grid["cols"]) * (grid["tile_height"] + grid["gap"])
        tile = grid_rgb.crop((x0, y0, x0 + grid["tile_width"], y0 + grid["tile_height"]))
        expected = np.asarray(tile.resize((width, height), Image.NEAREST), dtype=np.int16)
        # inside the 1-px border; the element may sit on a fractional pixel: try the offsets
        return min(
            np.abs(shot[dy : dy + height, dx : dx + width] - expected).mean()
            for dy in (0, 1, 2)
            for dx in (0, 1, 2)
            if shot[dy : dy + height, dx : dx + width].shape == expected.shape
        )

    assert error(k) < 2
    assert min(error(j) for j in range(len(grid["channels"])) if j != k) > 10  # not another

    # Hovering another tile previews it; leaving the picture returns to the pinned one.
    other = (k + 1) % len(grid["channels"])
    point = tile_point(page, "#layer-0", grid, other)  # scrolls the picture into view first
    box = page.query_selector("#layer-0 img.map").bounding_box()
    page.mouse.move(box["x"] + 1 + point["x"], box["y"] + 1 + point["y"])
    other_channel = str(grid["channels"][other])
    assert shows(canvas, "data-channel", other_channel) == other_channel
    page.mouse.move(2, 2)
    assert shows(canvas, "data-channel", str(channel)) == str(channel)

    # In the heatmap view the enlarged tile comes from the heatmap picture.
    page.click("#layer-0 .views button[data-view=heatmap]")
    page.click("#layer-0 img.map", position=tile_point(page, "#layer-0", grid, other))
    heatmap = layer["files"]["heatmap"]
    assert shows(canvas, "data-src", heatmap) == heatmap
    assert shows(canvas, "data-channel", other_channel) == other_channel
    assert watch.problems() == {}


@pytest.mark.browser
def test_channel_table_sorts_on_header_click(page, run_folder):
    folder, manifest = run_folder
    layer = manifest["layers"][0]
    watch = open_page(page, folder / "index.html")
    page.click("#layer-0 details.channels summary")
    rows = "#layer-0 table.stats tbody tr"

    def order():
        return [
            int(c) for c in page.eval_on_selector_all(rows, "l => l.map(r => r.dataset.channel)")
        ]

    assert order() == list(range(layer["channels"]))
    values = [round6(v) for v in layer["channel_stats"]["max"]]
    page.click("#layer-0 th[data-key=max] button")
    assert [values[c] for c in order()] == sorted(values, reverse=True)
    assert page.get_attribute("#layer-0 th[data-key=max]", "aria-sort") == "descending"
    page.click("#layer-0 th[data-key=max] button")
    assert [values[c] for c in order()] == sorted(values)
    zeros = [round(v, 4) for v in layer["channel_stats"]["zero_fraction"]]
    page.click("#layer-0 th[data-key=zero] button")
    assert [zeros[c] for c in order()] == sorted(zeros, reverse=True)
    page.click("#layer-0 th[data-key=channel] button")
    assert order() == list(range(layer["channels"]))
    # a row of a shown channel selects its tile
    shown = layer["grid"]["channels"][-1]
    page.click(f"{rows}[data-channel='{shown}']")
    canvas = page.query_selector("#layer-0 canvas.zoom-tile")
    assert shows(canvas, "data-channel", str(shown)) == str(shown)
    assert watch.problems() == {}


@pytest.mark.browser
def test_run_page_screenshot_is_not_blank(page, run_folder):
    folder, _ = run_folder
    watch = open_page(page, folder / "index.html")
    page.click("#layer-0 .views button[data-view=heatmap]")
    image_width(page.query_selector("#layer-0 img.map"))
    page.evaluate("window.scrollTo(0, 0)")
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    colours = shot.getcolors(maxcolors=1 << 24)
    assert len(colours) > 50
    region = page.query_selector("#layer-0 img.map").screenshot()
    assert len(Image.open(io.BytesIO(region)).convert("RGB").getcolors(1 << 24)) > 20
    assert watch.problems() == {}


@pytest.mark.browser
def test_series_rows_pick_channels(page, tmp_path):
    folder, manifest = run_html(tmp_path, models.conv1d(), "--max-channels", "6", name="s.csv")
    layer = manifest["layers"][1]  # conv2: 8 channels, 6 shown
    shown, geometry = layer["shown_channels"], layer["series_layout"]
    watch = open_page(page, folder / "index.html")
    img = page.query_selector("#layer-1 img.map")
    assert image_width(img) == geometry["width"]
    scale = img.evaluate("i => i.clientWidth / i.naturalWidth")
    k = len(shown) - 1
    y = geometry["strip_top"] + k * (geometry["row_height"] + geometry["row_gap"])
    x = geometry["plot_x"] + geometry["plot_width"] / 2
    img.click(position={"x": x * scale, "y": (y + geometry["row_height"] / 2) * scale})
    canvas = page.query_selector("#layer-1 canvas.zoom-tile")
    assert shows(canvas, "data-channel", str(shown[k])) == str(shown[k])
    assert canvas.is_visible()
    page.wait_for_function("c => c.dataset.drawn === c.dataset.src", arg=canvas)
    assert page.text_content("#layer-1 .zoom-stats dd[data-key=channel]") == str(shown[k])
    assert page.query_selector("#layer-0 svg") is None  # the input signal sits above, once
    assert page.query_selector("figure.input svg.signal").is_visible()
    assert watch.problems() == {}


@pytest.mark.browser
def test_escaped_names_stay_text_in_the_browser(page, tmp_path):
    folder, manifest = run_html(tmp_path, nasty_model(), name='a "q" <i>.png')
    watch = open_page(page, folder / "index.html")
    assert page.text_content("#layer-0 h2").endswith(NASTY)
    assert page.eval_on_selector_all("script", "l => l.length") == 2
    grid = manifest["layers"][0]["grid"]
    page.click("#layer-0 img.map", position=tile_point(page, "#layer-0", grid, 0))
    assert page.get_attribute("#layer-0 img.map", "alt") == f"grid of layer {NASTY}"
    assert watch.problems() == {}  # no dialog: nothing ran


@pytest.mark.browser
def test_scan_page_in_the_browser(page, tmp_path):
    report = scan_report()
    path = tmp_path / "scan.html"
    write_reports(report, [(path, "html")])
    watch = open_page(page, path)
    assert page.eval_on_selector_all("section.layer", "l => l.length") == len(report["layers"])
    assert "bad <img src=x onerror=alert(1)>.png" in page.text_content("main")
    chart = page.query_selector("#layer-2 svg.chan")
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    channels = report["layers"][2]["channels"]
    target = 7
    page.mouse.move(
        box["x"] + (target + 0.5) * box["width"] / channels, box["y"] + box["height"] / 2
    )
    tip = page.query_selector("#tip")
    assert tip.is_visible() and tip.get_attribute("data-channel") == str(target)
    assert "channel 7" in tip.text_content()
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    assert len(shot.getcolors(1 << 24)) > 5
    assert watch.problems() == {}
