"""``fmviz exemplars``: planted models whose channels respond to known patterns.

The image model is built here: a 1x1 convolution computes ``R - G - B`` (channel 0, "red") and
``G - R - B`` (channel 1, "green") after a ReLU, then a 3x3 convolution of ones per channel with
stride 2 and padding 1, after a ReLU. Over generated images with a red or green square of known
size and place, the expected winners, positions and boxes are computed independently with numpy
(the convolutions written out as sums), and the exemplar PNG is decoded and its crops compared
with the source pixels.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from PIL import Image

from fmviz.cli import main
from fmviz.exemplars import (
    ExemplarOptions,
    ExemplarScanner,
    find_exemplars,
    geometry,
    write_exemplars,
)
from fmviz.inputs import InputOptions
from fmviz.model import open_model
from fmviz.render.exemplars import LABEL_W, TILE, crop_cell, tile_origin
from tests.models import init, make_model, save, tensor_input

SIZE = 32


def planted_image_model(size: int | str = SIZE) -> object:
    w1 = np.array([[1, -1, -1], [-1, 1, -1]], dtype=np.float32).reshape(2, 3, 1, 1)
    w2 = np.ones((2, 1, 3, 3), dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "c1.w"], ["c1"], name="colour", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2.w"], ["c2"], name="pool", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["c2"], ["out"], name="relu2"),
    ]
    return make_model(
        nodes, [tensor_input("input", ["N", 3, size, size])],
        [tensor_input("out", ["N", 2, None, None])],
        [init("c1.w", w1), init("c2.w", w2)],
    )


def _square_picture(colour, top, left, side, size=SIZE, background=(90, 90, 90)) -> np.ndarray:
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = background
    pixels[top:top + side, left:left + side] = colour
    return pixels


def _oracle_maps(pixels: np.ndarray) -> list[np.ndarray]:
    """The planted model in numpy: [C, H, W] maps of both layers (float64)."""
    x = pixels.astype(np.float64).transpose(2, 0, 1)  # --preset raw: sums are exact
    r, g, b = x
    first = np.maximum(np.stack([r - g - b, g - r - b]), 0)
    padded = np.pad(first, ((0, 0), (1, 1), (1, 1)))
    h = (first.shape[1] + 2 - 3) // 2 + 1
    second = np.zeros((2, h, h))
    for i in range(h):
        for j in range(h):
            second[:, i, j] = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2))
    return [first, np.maximum(second, 0)]


def _oracle(files: list[Path], k: int):
    """Per layer, per channel: [(path, score, position, box)] best first, boxes by hand:
    layer 0 sees [i, i+1) x [j, j+1); layer 1 sees [2i-1, 2i+2) x [2j-1, 2j+2), clipped."""
    entries: list[list[list[tuple]]] = [[[], []], [[], []]]
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for layer, maps in enumerate(_oracle_maps(pixels)):
            for c in range(2):
                flat = maps[c].astype(np.float32).ravel()  # onnxruntime's float32 values
                at = int(np.argmax(flat))
                i, j = divmod(at, maps.shape[2])
                if layer == 0:
                    box = [j, i, j + 1, i + 1]
                else:
                    box = [max(2 * j - 1, 0), max(2 * i - 1, 0), min(2 * j + 2, SIZE),
                           min(2 * i + 2, SIZE)]
                entries[layer][c].append((str(path), float(flat[at]), [i, j], box))
    for per_layer in entries:
        for c, found in enumerate(per_layer):
            found.sort(key=lambda e: (-e[1], e[0]))
            per_layer[c] = found[:k]
    return entries


@pytest.fixture()
def planted(tmp_path):
    return write_planted(tmp_path)


def write_planted(tmp_path: Path) -> tuple[Path, list[Path]]:
    """The planted model and 15 pictures (one a twin) under ``tmp_path``."""
    model = save(planted_image_model(), tmp_path / "planted.onnx")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    files = []
    for n in range(14):
        red = n % 2 == 0
        side = int(rng.integers(2, 7))
        top, left = (int(v) for v in rng.integers(0, SIZE - side, size=2))
        value = 120 + 9 * n
        colour = (value, 10, 20) if red else (15, value, 5)
        path = folder / f"img-{n:02d}.png"
        Image.fromarray(_square_picture(colour, top, left, side)).save(path)
        files.append(path)
    # a tie: the same picture under two names (the earlier path must win)
    twin = folder / "img-00b.png"
    twin.write_bytes(files[0].read_bytes())
    files.append(twin)
    return model, sorted(files)


def test_top_inputs_and_boxes_equal_numpy(planted, tmp_path):
    model_path, files = planted
    k = 4
    out = tmp_path / "out"
    code = main([
        "exemplars", str(model_path), str(files[0].parent), "-o", str(out), "--top", str(k),
        "--preset", "raw", "--quiet"])
    assert code == 0
    report = json.loads((out / "exemplars.json").read_text())
    assert report["schema"] == "fmviz/exemplars/1"
    assert report["inputs_scanned"] == len(files) and report["top"] == k
    expected = _oracle(files, k)
    assert [layer["receptive_field"] for layer in report["layers"]] == [[1, 1], [3, 3]]
    assert [layer["input_stride"] for layer in report["layers"]] == [[1, 1], [2, 2]]
    for layer, want in zip(report["layers"], expected, strict=True):
        for c in range(2):
            got = layer["exemplars"][c]
            assert [Path(e["path"]).name for e in got] == [Path(w[0]).name for w in want[c]]
            for entry, (_, score, position, box) in zip(got, want[c], strict=True):
                assert entry["score"] == pytest.approx(score, rel=1e-6)
                assert entry["position"] == position
                assert entry["box"] == box


def test_crops_in_png_equal_source_pixels(planted, tmp_path):
    model_path, files = planted
    model = open_model(model_path)
    options = ExemplarOptions(top=3, inputs=InputOptions(preset="raw"))
    result = find_exemplars(model, files, options)
    report = write_exemplars(model, result, options.inputs, tmp_path / "out", max_channels=2)
    layer = report["layers"][1]
    picture = np.asarray(Image.open(tmp_path / "out" / layer["files"]["exemplars"]).convert("RGB"))
    crops = 0
    for row, c in enumerate(layer["shown_channels"]):
        for rank, entry in enumerate(layer["exemplars"][c]):
            source = np.asarray(Image.open(entry["path"]).convert("RGB"))
            i, j = entry["position"]
            unclipped = [2 * i - 1, 2 * j - 1, 2 * i + 2, 2 * j + 2]  # top, left, bottom, right
            ys, xs, (ry, rx, h, w) = crop_cell(unclipped, SIZE, SIZE)
            x0, y0 = tile_origin(row, rank)
            tile = picture[y0 + ry:y0 + ry + h, x0 + rx:x0 + rx + w]
            inside_y = (ys >= 0) & (ys < SIZE)
            inside_x = (xs >= 0) & (xs < SIZE)
            want = source[np.ix_(ys[inside_y], xs[inside_x])]
            assert np.array_equal(tile[np.ix_(inside_y, inside_x)], want)
            if not inside_y.all() or not inside_x.all():  # padding: the grey hatch
                outside = tile[~inside_y] if not inside_y.all() else tile[:, ~inside_x]
                assert set(map(tuple, outside.reshape(-1, 3))) <= {(150, 150, 150),
                                                                   (190, 190, 190)}
            crops += 1
    assert crops == 6 and picture.shape[1] >= LABEL_W + 3 * TILE


def _key(result):
    out = []
    for top in result.tops:
        out.append((top.scores.tolist(), top.paths.tolist(), top.index.tolist(),
                    top.position.tolist(), top.count, np.round(top.total, 9).tolist()))
    return out


def test_merged_top_k_over_any_split_equals_one_pass(planted):
    model_path, files = planted
    model = open_model(model_path)
    options = ExemplarOptions(top=5, batch_size=3)
    scanner = ExemplarScanner(model, options)
    whole = scanner.result(scanner.scan(files), len(files))
    rng = random.Random(7)
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(files)), 3))
        bounds = [0, *cuts, len(files)]
        parts = [scanner.scan(files[a:b], first_index=a)
                 for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        rng.shuffle(parts)
        merged = scanner.empty()
        for part in parts:
            merged.merge(part)
        assert _key(scanner.result(merged, len(files))) == _key(whole)


def test_bad_inputs_are_listed_with_their_index(planted, tmp_path):
    model_path, files = planted
    bad = tmp_path / "images" / "broken.png"
    bad.write_bytes(b"not a png")
    model = open_model(model_path)
    scanner = ExemplarScanner(model, ExemplarOptions(top=2))
    todo = [files[0], bad, files[1]]
    partial = scanner.scan(todo[2:], first_index=2).merge(scanner.scan(todo[:2]))
    assert [(s["index"], Path(s["path"]).name) for s in partial.skipped] == [(1, "broken.png")]
    assert partial.inputs_scanned == 2
    code = main(["exemplars", str(model_path), str(bad), str(files[0]), "--strict", "-q",
                 "-o", str(tmp_path / "o")])
    assert code == 2


def test_boxes_follow_resize_to_the_original_pixels(tmp_path):
    """A 64x48 picture fed to the 32x32 model: boxes scale by 2 (x) and 1.5 (y), then clip."""
    model_path = save(planted_image_model(), tmp_path / "m.onnx")
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[30:36, 40:48] = (255, 0, 0)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    model = open_model(model_path)
    options = ExemplarOptions(top=1)
    result = find_exemplars(model, [path], options)
    prepared = model.prepare(path)
    where = geometry(prepared, (-2, -1))
    assert where.original == (48, 64) and where.scale == (1.5, 2.0)
    report = write_exemplars(model, result, options.inputs, tmp_path / "o")
    for layer, entry in ((0, report["layers"][0]["exemplars"][0][0]),
                         (1, report["layers"][1]["exemplars"][0][0])):
        i, j = entry["position"]
        if layer == 0:
            top, left, bottom, right = i, j, i + 1, j + 1
        else:
            top, left, bottom, right = 2 * i - 1, 2 * j - 1, 2 * i + 2, 2 * j + 2
        want = [max(int(np.floor(left * 2.0)), 0), max(int(np.floor(top * 1.5)), 0),
                min(int(np.ceil(right * 2.0)), 64), min(int(np.ceil(bottom * 1.5)), 48)]
        assert entry["box"] == want
        x0, y0, x1, y1 = entry["box"]
        assert pixels[y0:y1, x0:x1, 0].max() == 255  # the box holds part of the red patch


# ----------------------------------------------------------------------------- 1-D


def planted_series_model(length: int = 64):
    """Conv1d (kernel 5, stride 2, pad 2) matching a +1 spike at the centre tap, then ReLU."""
    w = np.zeros((1, 1, 5), dtype=np.float32)
    w[0, 0, 2] = 1.0
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="spike", kernel_shape=[5],
                         strides=[2], pads=[2, 2]),
        helper.make_node("Relu", ["c"], ["out"], name="relu"),
    ]
    return make_model(nodes, [tensor_input("input", [1, 1, length])],
                      [tensor_input("out", [1, 1, None])], [init("w", w)])


def test_series_windows_planted(tmp_path):
    model_path = save(planted_series_model(), tmp_path / "s.onnx")
    files = []
    for n, (where, height) in enumerate([(10, 1.0), (31, 3.0), (62, 2.0), (0, 0.5)]):
        signal = np.zeros(64)
        signal[where] = height
        path = tmp_path / f"s{n}.csv"
        path.write_text("\n".join(f"{v:g}" for v in signal) + "\n")
        files.append((path, where, height))
    out = tmp_path / "o"
    code = main(["exemplars", str(model_path), *(str(f[0]) for f in files), "-o", str(out),
                 "--top", "4", "-q"])
    assert code == 0
    report = json.loads((out / "exemplars.json").read_text())
    layer = report["layers"][0]
    assert layer["receptive_field"] == [5] and layer["input_stride"] == [2]
    got = layer["exemplars"][0]
    # only even spike positions land on the centre tap (stride 2): 10 and 62 do, 31 and 0 too
    # for 0; 31 is seen by no centre tap and scores 0 there
    scores = {}
    for path, where, height in files:
        centre = where // 2 if where % 2 == 0 else None
        scores[path.name] = (height if centre is not None else 0.0, centre)
    want = sorted(scores.items(), key=lambda item: (-item[1][0], str(tmp_path / item[0])))
    assert [Path(e["path"]).name for e in got] == [name for name, _ in want]
    for entry, (_, (score, centre)) in zip(got, want, strict=True):
        assert entry["score"] == pytest.approx(score)
        if centre is not None:
            assert entry["position"] == [centre]
            assert entry["box"] == [max(2 * centre - 2, 0), min(2 * centre + 3, 64)]
    picture = Image.open(out / layer["files"]["exemplars"])
    assert picture.size[0] > LABEL_W and picture.size[1] > 20


def test_html_page_click_shows_input_box_and_map(planted, tmp_path):
    from tests.browser import Watch, launch

    model_path, files = planted
    out = tmp_path / "html"
    assert main(["exemplars", str(model_path), str(files[0].parent), "-o", str(out), "--top",
                 "2", "--preset", "raw", "--html", "-q"]) == 0
    report = json.loads((out / "exemplars.json").read_text())
    layer = report["layers"][1]
    first = layer["exemplars"][layer["shown_channels"][0]][0]
    with launch() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        watch = Watch.attach(page)
        page.goto((out / "index.html").as_uri())
        crops = page.locator("figure.crop")
        assert crops.count() == sum(
            len(item["exemplars"][c]) for item in report["layers"] for c in item["shown_channels"])
        page.locator("#layer-1 figure.crop").first.click()
        assert page.locator("#viewer").is_visible()
        assert first["path"] in page.locator("#viewer-title").text_content()
        assert page.locator("#viewer-map").is_visible()
        rect = page.locator("#viewer-rect").bounding_box()
        picture = page.locator("#viewer-input").bounding_box()
        x0, y0, x1, y1 = first["box"]
        scale = picture["width"] / SIZE
        assert abs(rect["x"] - picture["x"] - x0 * scale) <= 2
        assert abs(rect["width"] - (x1 - x0) * scale) <= 4
        assert abs(rect["y"] - picture["y"] - y0 * scale) <= 2
        page.keyboard.press("Escape")
        assert not page.locator("#viewer").is_visible()
        assert watch.problems() == {}


def test_geometry_follows_exif_orientation(tmp_path):
    """A 40x20 picture whose EXIF says "rotate 90" is shown 20 wide and 40 high: boxes live in
    that picture's pixels."""
    model = open_model(save(planted_image_model(), tmp_path / "m.onnx"))
    image = Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    image.save(path, exif=exif.tobytes())
    where = geometry(model.prepare(path), (-2, -1))
    assert where.original == (40, 20) and where.scale == (40 / 32, 20 / 32)
