"""Issue 13 items 7-9 and the grid's labels: rejection hints, a WAV rate notice, imgsz
metadata, the gallery's index/min/outputs, labels on greyscale grids, the empty-slot colour."""

from __future__ import annotations

import json
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from fmviz.cli import main
from tests import models


def _out():
    return helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None, None])


def _write_wav(path, samples: np.ndarray, rate: int) -> None:
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)


def _chunked_series_model(recurrent: bool) -> onnx.ModelProto:
    """[1, 1, L] -> Reshape [1, 1, 512] -> Conv1d; or [1, 1, L] -> Conv1d -> LSTM taking 512
    features (a model trained on 512-sample chunks)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((1, 1, 1)).astype(np.float32), "conv.w")
    conv = helper.make_node("Conv", ["r" if not recurrent else "input", "conv.w"], ["conv_out"],
                            name="conv")
    inits = [w]
    nodes = []
    if recurrent:
        hidden = 4
        inits += [numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, 512))
                                          .astype(np.float32), "W"),
                  numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden))
                                          .astype(np.float32), "R")]
        nodes = [conv, helper.make_node("LSTM", ["conv_out", "W", "R"], ["out"],
                                        hidden_size=hidden, name="lstm")]
    else:
        inits.append(numpy_helper.from_array(np.array([1, 1, 512], np.int64), "shape"))
        nodes = [helper.make_node("Reshape", ["input", "shape"], ["r"], name="chunk"), conv,
                 helper.make_node("Relu", ["conv_out"], ["out"], name="relu")]
    return models.make_model(nodes, [models.tensor_input("input", [1, 1, "L"])],
                             [_out()],
                             inits)


def test_rejected_series_suggests_the_chunk_length(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    _write_wav(wav, np.sin(np.arange(1000) / 10), 16000)
    for recurrent in (False, True):
        path = models.save(_chunked_series_model(recurrent), tmp_path / f"m{recurrent}.onnx")
        code = main(["run", str(path), str(wav), "-o", str(tmp_path / "out"), "-q"])
        err = capsys.readouterr().err
        assert code == 2
        line = [x for x in err.splitlines() if x.startswith("Error:")][0]
        assert "--length 512" in line, line
        ok = main(["run", str(path), str(wav), "-o", str(tmp_path / "ok"), "-q",
                   "--length", "512"])
        capsys.readouterr()
        assert ok == 0


def _odd_size_model(metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """Two stride-2 branches that disagree on odd sizes (ceil vs floor) and are added."""
    rng = np.random.default_rng(4)
    a, ia = models.conv(rng, "a", "input", "a_out", 3, 4, stride=(2, 2))
    b, ib = models.conv(rng, "b", "pooled", "b_out", 3, 4, kernel=(1, 1), pads=(0, 0, 0, 0))
    nodes = [a, helper.make_node("MaxPool", ["input"], ["pooled"], kernel_shape=[2, 2],
                                 strides=[2, 2], name="pool"), b,
             helper.make_node("Add", ["a_out", "b_out"], ["out"], name="add")]
    model = models.make_model(nodes, [models.tensor_input("input", [1, 3, "H", "W"])],
                              [_out()],
                              [*ia, *ib], check=False)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_rejected_dynamic_image_suggests_a_multiple_of_the_stride(tmp_path, capsys):
    picture = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (33, 33, 3), np.uint8)).save(
        picture)
    for metadata, stride in ((None, 2), ({"stride": "32"}, 32)):
        path = models.save(_odd_size_model(metadata), tmp_path / f"m{stride}.onnx")
        code = main(["run", str(path), str(picture), "-o", str(tmp_path / "out"), "-q"])
        err = capsys.readouterr().err
        assert code == 2
        line = [x for x in err.splitlines() if x.startswith("Error:")][0]
        assert f"multiple of {stride}" in line and "--size" in line, line
        size = f"{stride * 2}x{stride * 2}"
        assert main(["run", str(path), str(picture), "-o", str(tmp_path / "ok"), "-q",
                     "--size", size]) == 0
        capsys.readouterr()


def test_wav_rate_differing_from_a_fed_rate_is_a_notice(tmp_path, capsys):
    rng = np.random.default_rng(5)
    c, inits = models.conv(rng, "conv", "input", "conv_out", 1, 2, kernel=(3,), pads=(1, 1))
    model = models.make_model(
        [c, helper.make_node("Mul", ["conv_out", "sr"], ["out"], name="scale")],
        [models.tensor_input("input", [1, 1, "L"]), models.tensor_input("sr", [1])],
        [_out()], inits,
        check=False)
    path = models.save(model, tmp_path / "m.onnx")
    wav = tmp_path / "a.wav"
    _write_wav(wav, np.sin(np.arange(800) / 7), 8000)
    assert main(["run", str(path), str(wav), "-o", str(tmp_path / "o1"),
                 "--feed", "sr=16000"]) == 0
    captured = capsys.readouterr()
    assert "8000 Hz" in captured.err + captured.out and "sr=16000" in captured.err + captured.out
    assert main(["run", str(path), str(wav), "-o", str(tmp_path / "o2"),
                 "--feed", "sr=8000"]) == 0
    captured = capsys.readouterr()
    assert "Hz" not in captured.err + captured.out


def test_imgsz_metadata_is_the_default_size_of_a_dynamic_model(tmp_path, capsys):
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(picture)
    model = models.dynamic_hw()
    model.metadata_props.add(key="imgsz", value="[40, 64]")  # [h, w]
    path = models.save(model, tmp_path / "m.onnx")
    assert main(["run", str(path), str(picture), "-o", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "imgsz" in captured.err + captured.out
    manifest = json.loads((tmp_path / "a" / "p" / "manifest.json").read_text())
    assert manifest["input"]["preprocess"]["resized_to"] == [64, 40]
    assert manifest["input"]["preprocess"]["resize_rule"] == "metadata"
    assert manifest["layers"][0]["shape"][2:] == [20, 32]
    # --size overrides the metadata
    assert main(["run", str(path), str(picture), "-o", str(tmp_path / "b"), "-q",
                 "--size", "32x32"]) == 0
    manifest = json.loads((tmp_path / "b" / "p" / "manifest.json").read_text())
    assert manifest["input"]["preprocess"]["resized_to"] == [32, 32]
    # "640" alone is square
    from fmviz.graph.load import parse_class_names, parse_imgsz

    assert parse_imgsz("640") == (640, 640) and parse_imgsz("[320, 256]") == (256, 320)
    assert parse_imgsz("nonsense") is None
    assert parse_class_names("{0: 'person', 2: 'car'}") == ["person", "1", "car"]
    assert parse_class_names('["a", "b"]') == ["a", "b"]


# ----------------------------------------------------------------------------- grid labels


def test_greyscale_grid_carries_channel_labels_only_inside_the_recorded_box(tmp_path):
    from types import SimpleNamespace

    from fmviz.render.layer import RenderOptions, render_layer

    rng = np.random.default_rng(7)
    maps = rng.random((1, 12, 30, 30)).astype(np.float32)
    result = render_layer(maps, SimpleNamespace(activation=None, index=0, name="l"),
                          SimpleNamespace(overlay_picture=lambda: None, signal=None,
                                          preprocess={}),
                          tmp_path, "l", RenderOptions(normalize="channel"))
    layout = result["grid"]
    bw, bh = layout["label_box"]
    assert 0 < bw < layout["tile_width"] / 2 and 0 < bh < layout["tile_height"] / 2
    grey = np.asarray(Image.open(tmp_path / result["files"]["grid"]).convert("RGB"))
    scale, gap = layout["scale"], layout["gap"]
    for k, channel in enumerate(layout["channels"]):
        r, c = divmod(k, layout["cols"])
        x, y = gap + c * (layout["tile_width"] + gap), gap + r * (layout["tile_height"] + gap)
        tile = grey[y: y + layout["tile_height"], x: x + layout["tile_width"], 0].astype(int)
        plane = maps[0, channel].astype(np.float64)
        want = np.rint((plane - plane.min()) / (plane.max() - plane.min()) * 249)
        want = np.rint(np.kron(want, np.ones((scale, scale))) * 255 / 249)
        outside = np.ones(tile.shape, bool)
        outside[:bh, :bw] = False
        np.testing.assert_allclose(tile[outside], want[outside], atol=1)  # true values
        box = tile[:bh, :bw]
        # the label: the channel's own number drawn in black on a white box (drawn here with
        # Pillow's default font at the box's 2-px inset, independently of fmviz's stamps)
        from PIL import ImageDraw, ImageFont

        font = ImageFont.load_default()
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
            (0, 0), str(channel), font=font)
        text = Image.new("L", (right - left + 4, bottom - top + 3), 255)
        draw = ImageDraw.Draw(text)
        draw.fontmode = "1"
        draw.text((2 - left, 1 - top), str(channel), fill=0, font=font)
        expected = np.asarray(text).astype(int)
        assert expected.shape[0] <= bh and expected.shape[1] <= bw and (expected == 0).any()
        np.testing.assert_array_equal(box[: expected.shape[0], : expected.shape[1]], expected)


def test_empty_slot_colour_is_quiet_and_far_from_the_default_palettes():
    from fmviz.render import tiles

    grey = np.repeat(tiles._GREY[:, None], 3, axis=1)
    for lut in (grey, tiles.colormap_lut("magma"), tiles.colormap_lut("RdBu_r"),
                tiles.colormap_lut("viridis")):
        rgb = np.array(tiles.separator_colour(lut), dtype=float)
        assert np.sqrt(((lut.astype(float) - rgb) ** 2).sum(axis=1)).min() >= 60
        luminance = rgb @ [0.2126, 0.7152, 0.0722]
        assert luminance < 100  # a dark, dull colour, not a loud bright one


# ----------------------------------------------------------------------------- the gallery


def _class_model() -> onnx.ModelProto:
    """conv_bn_relu with a [1, 4] class head (GlobalAveragePool -> Flatten) and class names."""
    model = models.conv_bn_relu(batch=1, size=24)
    last = model.graph.output[0].name
    model.graph.node.extend([
        helper.make_node("GlobalAveragePool", [last], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["scores"], name="flat"),
    ])
    channels = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    model.graph.output.append(
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, channels]))
    model.metadata_props.add(key="names", value=str({k: f"thing{k}" for k in range(channels)}))
    return model


def test_manifest_records_the_model_outputs_with_top_five_labels(tmp_path):
    from onnx.reference import ReferenceEvaluator

    from tests.test_gallery import run_html

    model = _class_model()
    folder, manifest = run_html(tmp_path, model)
    scores = [o for o in manifest["outputs"] if o["name"] == "scores"][0]
    assert scores["shape"][0] == 1
    # the same input through the reference evaluator
    from fmviz.model import open_model

    prepared = open_model(tmp_path / "model.onnx").prepare(tmp_path / "pic.png")
    want = ReferenceEvaluator(model).run(["scores"], {"input": prepared.array})[0][0]
    order = np.argsort(-want, kind="stable")[:5]
    assert [t["class"] for t in scores["top"]] == [int(k) for k in order]
    assert [t["label"] for t in scores["top"]] == [f"thing{k}" for k in order]
    np.testing.assert_allclose([t["value"] for t in scores["top"]], want[order], rtol=1e-4,
                               atol=1e-5)
    html = (folder / "index.html").read_text()
    assert "Model outputs" in html and f"thing{order[0]}" in html
    # the side index: one entry per layer with its picture and channel count
    assert html.count('<nav class="index"') == 1
    for pos, layer in enumerate(manifest["layers"]):
        assert f'href="#layer-{pos}" data-pos="{pos}"' in html
        assert f'{layer["channels"]} ch</span>' in html
    assert 'data-key="min"' in html


def test_gallery_index_stays_in_view_min_column_and_click_overlay(tmp_path):
    from tests import browser
    from tests.test_gallery import open_page, run_html

    folder, manifest = run_html(tmp_path, models.conv_bn_relu(size=24))
    with browser.launch() as chromium:
        context = chromium.new_context(viewport={"width": 1280, "height": 700})
        page = context.new_page()
        watch = open_page(page, folder / "index.html")
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        top = page.evaluate("document.querySelector('nav.index').getBoundingClientRect().top")
        assert 0 <= top < 5  # stuck to the top of the window after scrolling
        section = page.locator("section.layer").first
        details = section.locator("details.channels")
        details.locator("summary").click()
        mins = manifest["layers"][0]["channel_stats"]["min"]
        cell = details.locator("tbody tr").first.locator("td").nth(2).inner_text()
        assert float(cell) == float(f"{mins[0]:.4g}")
        img = section.locator("img.map")
        img.scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('img.map').dataset.fitted")
        box = img.bounding_box()
        layout = manifest["layers"][0]["grid"]
        scale = box["width"] / layout["cols"] / (layout["tile_width"] + layout["gap"])
        img.click(position={"x": (layout["gap"] + layout["tile_width"] / 2) * scale,
                            "y": (layout["gap"] + layout["tile_height"] / 2) * scale})
        overlay = section.locator("canvas.zoom-overlay")
        page.wait_for_function(
            "document.querySelector('canvas.zoom-overlay').dataset.channel !== undefined")
        assert overlay.is_visible()
        assert overlay.get_attribute("data-channel") == str(layout["channels"][0])
        assert "--overlay-channel" in section.locator(".overlay-note").inner_text()
        assert watch.problems() == {}
        context.close()
