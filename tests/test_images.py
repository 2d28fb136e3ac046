"""fmviz.inputs.images: decoding, orientation, channel conversion, resizing and scaling.

Every expected tensor is computed here by hand with numpy (and Pillow only where the SPEC says
"Pillow's bilinear resize"), never with the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmviz.errors import InputError, ModelError, OptionError
from fmviz.graph import ModelInput, load_model
from fmviz.inputs import InputOptions, load_input, primary_input
from tests import models

F32 = np.dtype(np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def target(shape, dtype=F32, name="input") -> ModelInput:
    return ModelInput(name, tuple(shape), np.dtype(dtype) if dtype is not None else None)


DYNAMIC = target(("N", 3, "H", "W"))


def load(path, tgt=DYNAMIC, **options):
    return load_input(path, tgt, InputOptions(**options))


def hwc(prepared) -> np.ndarray:
    """The first batch item as float64 [H, W, C], whatever the layout."""
    array = prepared.array[0].astype(np.float64)
    if prepared.preprocess["layout"] == "NCHW":
        array = array.transpose(1, 2, 0)
    return array


@pytest.fixture
def rgb(tmp_path) -> tuple[Path, np.ndarray]:
    """A 9x7 (W x H) random RGB PNG and its pixels."""
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels, "RGB").save(path)
    return path, pixels


# ----------------------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("unit", lambda x: x / 255),
        ("imagenet", lambda x: (x / 255 - IMAGENET_MEAN) / IMAGENET_STD),
        ("signed", lambda x: 2 * x / 255 - 1),
        ("raw", lambda x: x),
    ],
)
def test_presets_equal_hand_computation(rgb, preset, expected):
    path, pixels = rgb
    prepared = load(path, preset=preset)
    assert prepared.array.dtype == np.float32
    assert prepared.array.shape == (1, 3, 7, 9)
    want = expected(pixels.astype(np.float64))
    np.testing.assert_allclose(hwc(prepared), want, rtol=1e-6, atol=1e-6)
    assert prepared.preprocess["preset"] == preset


def test_default_preset_is_unit(rgb):
    path, pixels = rgb
    prepared = load(path)
    np.testing.assert_allclose(hwc(prepared), pixels / 255, atol=1e-7)
    assert prepared.preprocess["preset"] == "unit"


def test_mean_std_one_value_and_per_channel(rgb):
    path, pixels = rgb
    x = pixels.astype(np.float64)
    one = load(path, mean=(0.5,), std=(0.25,))
    np.testing.assert_allclose(hwc(one), (x / 255 - 0.5) / 0.25, rtol=1e-6, atol=1e-6)
    mean, std = np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 2.0])
    per = load(path, mean=tuple(mean), std=tuple(std))
    np.testing.assert_allclose(hwc(per), (x / 255 - mean) / std, rtol=1e-6, atol=1e-6)
    # --mean alone keeps std 1; --std alone keeps mean 0
    np.testing.assert_allclose(hwc(load(path, mean=(0.5,))), x / 255 - 0.5, atol=1e-6)
    np.testing.assert_allclose(hwc(load(path, std=(0.5,))), x / 255 / 0.5, atol=1e-6)


def test_mean_std_replace_imagenet_values(rgb):
    path, pixels = rgb
    prepared = load(path, preset="imagenet", mean=(0.5,))
    expected = (pixels / 255 - 0.5) / IMAGENET_STD  # the preset's std is kept
    np.testing.assert_allclose(hwc(prepared), expected, rtol=1e-6, atol=1e-6)


def test_mean_std_are_in_unit_scale_for_raw_and_signed(rgb):
    path, pixels = rgb
    x = pixels.astype(np.float64)
    raw = load(path, preset="raw", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    # in the raw scale that is the well-known (x - 123.675) / 58.395 family
    np.testing.assert_allclose(
        hwc(raw), (x - 255 * IMAGENET_MEAN) / (255 * IMAGENET_STD), rtol=1e-6, atol=1e-5
    )
    signed = load(path, preset="signed", mean=(0.5,), std=(0.5,))
    # (2x/255 - 1 - (2*0.5 - 1)) / (2*0.5)
    np.testing.assert_allclose(hwc(signed), (2 * x / 255 - 1) / 1.0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("what", ["mean", "std"])
def test_wrong_mean_std_count_is_an_exact_error(rgb, what):
    path, _ = rgb
    with pytest.raises(OptionError) as info:
        load(path, **{what: (0.1, 0.2)})
    assert info.value.for_cli() == (
        f"--{what} has 2 values; the model takes 3 channels (give one value or one per channel)"
    )


def test_zero_std_is_refused(rgb):
    path, _ = rgb
    with pytest.raises(OptionError, match="std values must not be 0"):
        load(path, std=(1.0, 0.0, 1.0))


def test_bgr_swaps_colour_channels(rgb):
    path, pixels = rgb
    prepared = load(path, bgr=True)
    np.testing.assert_allclose(hwc(prepared), pixels[..., ::-1] / 255, atol=1e-7)
    assert prepared.preprocess["bgr"] is True


def test_bgr_keeps_alpha_last(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    prepared = load(path, target(("N", 4, "H", "W")), bgr=True, preset="raw")
    expected = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=2)
    np.testing.assert_array_equal(hwc(prepared), expected)


def test_bgr_with_a_greyscale_model_is_an_error(rgb):
    path, _ = rgb
    with pytest.raises(OptionError, match="bgr needs a model with 3 or 4 input channels"):
        load(path, target(("N", 1, "H", "W")), bgr=True)


# ----------------------------------------------------------------------------- layout


def test_nhwc_read_from_the_model(tmp_path):
    model_path = models.save(models.nhwc(), tmp_path / "nhwc.onnx")
    graph = load_model(model_path)
    pixels = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    prepared = load_input(path, primary_input(graph.inputs), InputOptions())
    assert prepared.preprocess["layout"] == "NHWC"
    assert prepared.array.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(prepared.array[0], pixels / 255, atol=1e-7)


def test_nchw_read_from_the_model(tmp_path, rgb):
    model_path = models.save(models.dynamic_hw(), tmp_path / "dyn.onnx")
    graph = load_model(model_path)
    path, pixels = rgb
    prepared = load_input(path, primary_input(graph.inputs), InputOptions())
    assert prepared.preprocess["layout"] == "NCHW"
    assert prepared.array.shape == (1, 3, 7, 9)
    np.testing.assert_allclose(prepared.array[0], pixels.transpose(2, 0, 1) / 255, atol=1e-7)


def test_layout_option_overrides_the_model(rgb):
    path, pixels = rgb
    ambiguous = target(("N", "A", "B", "C"))  # nothing tells the layout apart
    assert load(path, ambiguous).array.shape == (1, 3, 7, 9)
    prepared = load(path, ambiguous, layout="NHWC")
    assert prepared.preprocess["layout"] == "NHWC"
    assert prepared.array.shape == (1, 7, 9, 3)
    np.testing.assert_allclose(prepared.array[0], pixels / 255, atol=1e-7)
    forced = load(path, target(("N", "H", "W", 3)), layout="nchw")  # against the model's look
    assert forced.preprocess["layout"] == "NCHW"
    assert forced.array.shape[:2] == (1, 3)


def test_layout_with_an_impossible_channel_count_is_an_error(rgb):
    path, _ = rgb
    with pytest.raises(InputError) as info:
        load(path, target((1, 16, 16, 3)), layout="NCHW")
    assert str(info.value).startswith(f"{path}: input 'input' takes 16 channels in layout NCHW")


def test_image_needs_a_rank_4_input(rgb):
    path, _ = rgb
    with pytest.raises(InputError) as info:
        load(path, target(("N", 3, 32)))
    assert info.value.for_cli() == (
        f"{path}: an image needs a rank-4 model input ([N,C,H,W] or [N,H,W,C]); input "
        "'input' has shape [N, 3, 32] (feed a .npy tensor instead)"
    )


# ----------------------------------------------------------------------------- size


def test_resize_to_the_models_static_size_matches_pillow_bilinear(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    path = tmp_path / "big.png"
    picture = Image.fromarray(pixels)
    picture.save(path)
    prepared = load(path, target((1, 3, 16, 12)))  # H=16, W=12
    expected = np.asarray(picture.resize((12, 16), Image.BILINEAR), dtype=np.float64)
    assert prepared.array.shape == (1, 3, 16, 12)
    # Pillow's 8-bit resize rounds to whole levels; fmviz resizes in float: within one level
    np.testing.assert_allclose(hwc(prepared), expected / 255, atol=1.0 / 255 + 1e-6)
    assert prepared.preprocess["resize_rule"] == "model"
    assert prepared.preprocess["resized_to"] == [12, 16]


def test_size_option_resizes_for_dynamic_models(rgb):
    path, pixels = rgb
    prepared = load(path, size=(24, 12))  # W x H
    assert prepared.array.shape == (1, 3, 12, 24)
    expected = np.asarray(Image.fromarray(pixels).resize((24, 12), Image.BILINEAR), np.float64)
    np.testing.assert_allclose(hwc(prepared), expected / 255, atol=1.0 / 255 + 1e-6)
    assert prepared.preprocess["resize_rule"] == "--size"


def test_size_option_does_not_override_a_static_model_size(rgb):
    path, _ = rgb
    prepared = load(path, target((1, 3, 16, 16)), size=(24, 12))
    assert prepared.array.shape == (1, 3, 16, 16)
    assert prepared.preprocess["resize_rule"] == "model"


def test_dynamic_model_without_size_keeps_the_picture_size(rgb):
    path, pixels = rgb
    prepared = load(path)
    assert prepared.array.shape == (1, 3, 7, 9)
    assert prepared.preprocess["resize_rule"] == "none"
    assert "resized_to" not in prepared.preprocess
    np.testing.assert_allclose(hwc(prepared), pixels / 255, atol=1e-7)


# ----------------------------------------------------------------------------- EXIF


def test_exif_orientation_is_applied(tmp_path):
    # left half red, right half blue, 40 wide and 20 tall; orientation 6 = rotate 90 clockwise
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    assert Image.open(path).getexif()[0x0112] == 6  # the tag really is in the file

    prepared = load(path)
    assert prepared.array.shape == (1, 3, 40, 20)  # now 20 wide, 40 tall
    expected = np.rot90(pixels, k=-1) / 255  # clockwise
    assert np.abs(hwc(prepared) - expected).mean() < 0.02
    top, bottom = hwc(prepared)[5, 10], hwc(prepared)[35, 10]
    assert top[0] > 0.9 and top[2] < 0.1  # red on top
    assert bottom[2] > 0.9 and bottom[0] < 0.1  # blue below
    assert prepared.preprocess["exif_orientation"] == 6
    assert prepared.overlay_picture().size == (20, 40)  # the overlay picture is upright too


# ----------------------------------------------------------------------------- channels


def test_rgb_to_greyscale_for_one_channel_models(rgb):
    path, pixels = rgb
    prepared = load(path, target(("N", 1, "H", "W")), preset="raw")
    r, g, b = (pixels[..., i].astype(np.float64) for i in range(3))
    luma = r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000  # ITU-R 601-2, as Pillow documents
    assert prepared.array.shape == (1, 1, 7, 9)
    np.testing.assert_allclose(prepared.array[0, 0], luma, atol=1.0)
    assert prepared.preprocess["converted"] == "RGB->L"


def test_greyscale_to_rgb_and_rgba(tmp_path):
    grey = np.random.default_rng(4).integers(0, 256, (6, 5), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(path)
    three = load(path, preset="raw")
    np.testing.assert_array_equal(hwc(three), np.repeat(grey[..., None], 3, axis=2))
    four = load(path, target(("N", 4, "H", "W")), preset="raw")
    expected = np.concatenate(
        [np.repeat(grey[..., None], 3, axis=2), np.full((6, 5, 1), 255)], axis=2
    )
    np.testing.assert_array_equal(hwc(four), expected)
    one = load(path, target(("N", 1, "H", "W")), preset="raw")
    np.testing.assert_array_equal(one.array[0, 0], grey)


def test_rgba_png_for_three_and_four_channel_models(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    three = load(path, preset="raw")
    np.testing.assert_array_equal(hwc(three), pixels[..., :3])
    four = load(path, target(("N", 4, "H", "W")), preset="raw")
    np.testing.assert_array_equal(hwc(four), pixels)
    assert four.overlay_picture().mode == "RGB"


@pytest.mark.parametrize("bright", [True, False], ids=["bright", "dark"])
def test_16_bit_png_is_scaled_to_unit(tmp_path, bright):
    # A dark 16-bit picture (all values <= 255) must still be read as 16-bit data.
    high = 65535 if bright else 255
    values = np.random.default_rng(6).integers(0, high + 1, (6, 7)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    prepared = load(path)
    expected = np.repeat((values / 65535.0)[..., None], 3, axis=2)
    np.testing.assert_allclose(hwc(prepared), expected, atol=1e-6)
    assert prepared.overlay_picture().mode == "RGB"
    shown = np.asarray(prepared.overlay_picture())[..., 0].astype(np.float64)
    np.testing.assert_allclose(shown, values / 257.0, atol=1.0)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    picture = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red ink mix
    picture.paste((255, 255, 0, 0), (4, 0, 8, 8))  # pure blue on the right
    picture.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    prepared = load(path, preset="raw")
    array = hwc(prepared)
    np.testing.assert_allclose(array[4, 1], (255, 0, 0), atol=6)
    np.testing.assert_allclose(array[4, 6], (0, 0, 255), atol=6)
    assert prepared.preprocess["mode"] == "CMYK"


def test_palette_png_with_transparency(tmp_path):
    picture = Image.new("P", (8, 8), 0)
    picture.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    picture.paste(1, (0, 0, 4, 8))  # left half colour 1, right half colour 0 (transparent)
    path = tmp_path / "pal.png"
    picture.save(path, transparency=0)
    three = load(path, preset="raw")
    np.testing.assert_array_equal(hwc(three)[3, 1], (200, 100, 50))
    np.testing.assert_array_equal(hwc(three)[3, 6], (10, 20, 30))
    four = load(path, target(("N", 4, "H", "W")), preset="raw")
    assert hwc(four)[3, 1, 3] == 255  # opaque
    assert hwc(four)[3, 6, 3] == 0  # transparency honoured


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    prepared = load(path, preset="raw")
    np.testing.assert_array_equal(hwc(prepared)[4, 4], (255, 0, 0))
    assert prepared.preprocess["frames"] == 3
    assert prepared.preprocess["frame"] == 0


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".webp", ".jpeg"])
def test_other_listed_formats_decode(tmp_path, suffix):
    pixels = np.zeros((6, 6, 3), dtype=np.uint8)
    pixels[:, 3:] = 255
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    prepared = load(path, preset="raw")
    tolerance = 40 if suffix == ".jpeg" else 0
    np.testing.assert_allclose(hwc(prepared)[:, [0, 5]], pixels[:, [0, 5]], atol=tolerance)


# ----------------------------------------------------------------------------- bad files


def test_decompression_bomb_above_max_pixels(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 60)).save(path)
    with pytest.raises(InputError) as info:
        load(path, max_pixels=5000)
    assert info.value.for_cli() == (
        f"{path}: 100x60 pixels is over the limit of 5000 (a decompression bomb?); "
        "raise it with --max-pixels"
    )
    assert load(path, max_pixels=6000).array.shape == (1, 3, 60, 100)


def test_pillows_limit_is_the_default_and_max_pixels_can_raise_it(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    Image.new("L", (50, 50)).save(path)  # 2500 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli().startswith(f"{path}: ")
    assert "decompression bomb" in info.value.for_cli()
    # an explicit, larger limit lets the picture in (Pillow's own stop is lifted for it)
    assert load(path, max_pixels=10_000).array.shape == (1, 3, 50, 50)
    assert Image.MAX_IMAGE_PIXELS == 1000  # and Pillow's global is left as it was


def test_truncated_image(tmp_path, rgb):
    source, _ = rgb
    big = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(big).save(source)
    data = source.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli().startswith(f"{path}: cannot decode image (")


@pytest.mark.parametrize(
    "content", [b"", bytes(np.random.default_rng(8).integers(0, 256, 500, dtype=np.uint8))]
)
def test_empty_or_random_bytes_are_not_an_image(tmp_path, content):
    path = tmp_path / "noise.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        load(path)
    reason = "empty file, not an image" if not content else "not an image Pillow can read"
    assert info.value.for_cli() == f"{path}: {reason}"


def test_missing_folder_and_unsupported_inputs(tmp_path):
    with pytest.raises(InputError) as info:
        load(tmp_path / "absent.png")
    assert info.value.for_cli() == f"{tmp_path / 'absent.png'}: no such file"
    folder = tmp_path / "dir.png"
    folder.mkdir()
    with pytest.raises(InputError) as info:
        load(folder)
    assert info.value.for_cli() == f"{folder}: is a folder, not an input file"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputError) as info:
        load(notes)
    assert info.value.for_cli() == (
        f"{notes}: unsupported input type '.txt' (images: .png .jpg .jpeg .bmp .gif .tif .tiff "
        ".webp; series: .csv .tsv .wav; tensors: .npy .npz)"
    )


# ----------------------------------------------------------------------------- dtypes, batch


def test_uint8_model_gets_raw_values(rgb):
    path, pixels = rgb
    prepared = load(path, target(("N", 3, "H", "W"), np.uint8))
    assert prepared.array.dtype == np.uint8
    np.testing.assert_array_equal(prepared.array[0], pixels.transpose(2, 0, 1))
    assert prepared.preprocess["preset"] == "raw"


def test_integer_model_with_a_fractional_preset_is_an_error(rgb):
    path, _ = rgb
    with pytest.raises(InputError) as info:
        load(path, target(("N", 3, "H", "W"), np.uint8), preset="unit")
    assert info.value.for_cli() == (
        f"{path}: input 'input' is uint8; preset 'unit' gives values that are not exact "
        "integers in range (use --preset raw)"
    )


def test_float16_model_gets_float16(rgb):
    path, pixels = rgb
    prepared = load(path, target(("N", 3, "H", "W"), np.float16))
    assert prepared.array.dtype == np.float16
    np.testing.assert_allclose(
        prepared.array[0].astype(np.float64), pixels.transpose(2, 0, 1) / 255, atol=1e-3
    )


def test_static_batch_is_filled_with_copies(rgb):
    path, pixels = rgb
    prepared = load(path, target((3, 3, 7, 9)))
    assert prepared.array.shape == (3, 3, 7, 9)
    for item in prepared.array:
        np.testing.assert_allclose(item, pixels.transpose(2, 0, 1) / 255, atol=1e-7)
    assert prepared.preprocess["batch_copies"] == 3


def test_dynamic_batch_gets_one_item(rgb):
    path, _ = rgb
    assert load(path).array.shape[0] == 1


# ----------------------------------------------------------------------------- picture


def test_overlay_picture_is_capped_at_2048(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (2100, 300), (10, 200, 30)).save(path)
    prepared = load(path, target((1, 3, 8, 8)))
    assert prepared.overlay_picture().mode == "RGB"
    assert prepared.overlay_picture().size[0] == 2048
    assert abs(prepared.overlay_picture().size[1] - 300 * 2048 / 2100) <= 1
    np.testing.assert_array_equal(np.asarray(prepared.overlay_picture())[100, 100], (10, 200, 30))


def test_overlay_picture_keeps_the_original_size(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGBA", (40, 30), (1, 2, 3, 4)).save(path)
    prepared = load(path, target((1, 3, 16, 16)))
    assert prepared.overlay_picture().size == (40, 30)  # not the model's 16x16
    assert prepared.overlay_picture().mode == "RGB"


# ----------------------------------------------------------------------------- primary input


def test_primary_input_is_the_first_float_input_of_rank_2_or_more():
    inputs = [
        target((1,), np.float32, "scale"),
        target((1, 3, 8, 8), np.int64, "ids"),
        target((1, 3, 8, 8), np.float32, "image"),
    ]
    assert primary_input(inputs).name == "image"
    assert primary_input(inputs[:2]).name == "ids"  # integer image models fall back
    assert primary_input(inputs, "ids").name == "ids"
    with pytest.raises(OptionError) as info:
        primary_input(inputs, "nope")
    assert info.value.for_cli() == (
        "--input 'nope': the model has no such input (inputs: 'scale', 'ids', 'image')"
    )
    with pytest.raises(ModelError):
        primary_input(inputs[:1])


# ----------------------------------------------------------------------------- through a model


def _cast_conv_model(elem, shape):
    """``input`` of type ``elem`` -> Cast(float) -> ``conv`` (3 -> 4) -> Relu."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(9)
    c, inits = models.conv(rng, "conv", "x", "conv_out", 3, 4)
    nodes = [
        helper.make_node("Cast", ["input"], ["x"], name="cast", to=TensorProto.FLOAT),
        c,
        models.relu("relu", "conv_out", "relu_out"),
    ]
    return models.make_model(
        nodes,
        [models.tensor_input("input", shape, elem)],
        [models.tensor_input("relu_out", ["N", 4, None, None])],
        inits,
    )


def test_one_static_dim_is_kept_and_the_other_follows_the_aspect(tmp_path):
    from onnx import TensorProto

    from fmviz.model import open_model

    pixels = np.random.default_rng(10).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    path = tmp_path / "line.png"
    Image.fromarray(pixels).save(path)
    ocr = target(("N", 3, 32, "W"))  # text-line models: fixed height, any width
    prepared = load(path, ocr)
    assert prepared.array.shape == (1, 3, 32, 64)  # 100 x 50 scaled to height 32
    expected = np.asarray(Image.fromarray(pixels).resize((64, 32), Image.BILINEAR), np.float64)
    np.testing.assert_allclose(hwc(prepared), expected / 255, atol=1.0 / 255 + 1e-6)
    assert load(path, ocr, size=(80, 10)).array.shape == (1, 3, 32, 80)  # --size: the width
    assert load(path, target(("N", 3, "H", 40))).array.shape == (1, 3, 20, 40)
    # onnxruntime checks static dims: the model really accepts what was prepared
    model_path = models.save(
        _cast_conv_model(TensorProto.FLOAT, ["N", 3, 32, "W"]), tmp_path / "ocr.onnx"
    )
    capture = open_model(model_path, ("cpu",)).capture(path)
    assert capture["conv"].shape == (1, 4, 32, 64)


@pytest.mark.parametrize("dtype", [np.uint8, np.float16])
def test_uint8_and_float16_models_run(tmp_path, rgb, dtype):
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from fmviz.model import open_model

    path, pixels = rgb
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = _cast_conv_model(elem, ["N", 3, "H", "W"])
    capture = open_model(models.save(model, tmp_path / "m.onnx"), ("cpu",)).capture(path)
    assert capture.input.array.dtype == dtype
    x = pixels.transpose(2, 0, 1)[None].astype(np.float64)
    x = x.astype(np.uint8) if dtype == np.uint8 else (x / 255).astype(np.float16)
    [want] = ReferenceEvaluator(model).run(["relu_out"], {"input": x})
    np.testing.assert_allclose(capture["conv"], want, rtol=1e-3, atol=1e-3)


def test_bundled_digit_is_fed_exactly_as_the_training_script_prepared_digits():
    """models/train_digits_cnn.py resizes the 8-bit digit with Pillow, then divides by 255."""
    from pathlib import Path

    from fmviz.graph import load_model
    from fmviz.inputs import InputOptions, load_input, primary_input

    root = Path(__file__).resolve().parent.parent
    model, sample = root / "models" / "digits_cnn.onnx", root / "samples" / "digit-3.png"
    if not (model.exists() and sample.exists()):
        pytest.skip("bundled model or sample missing")
    target = primary_input(load_model(model).inputs)
    prepared = load_input(sample, target, InputOptions())
    resized = Image.open(sample).convert("L").resize((32, 32), Image.BILINEAR)
    expected = (np.asarray(resized, dtype=np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(prepared.array[0, 0], expected)
    assert prepared.preprocess["resample_on"] == "8-bit"


def test_size_on_a_static_model_is_ignored_with_a_notice(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(path)
    target = ModelInput("input", ("N", 3, 16, 16), np.dtype(np.float32))
    prepared = load_input(path, target, InputOptions(size=(64, 64)))
    assert prepared.array.shape == (1, 3, 16, 16)
    assert prepared.notices == [
        "--size 64x64 ignored: input 'input' has the static size 16x16"
    ]
