"""fmviz.io: safe names, stems, atomic writes and output folders."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmviz.errors import OutputError
from fmviz.io import (
    StemAllocator,
    atomic_open,
    atomic_write_bytes,
    atomic_write_text,
    ensure_dir,
    inside,
    safe_name,
)

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("conv1", "conv1"),
        ("/features/0/Conv", "_features_0_Conv"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..", "layer"),
        (".", "layer"),
        ("", "layer"),
        ("/", "_"),
        (".hidden", "hidden"),
        ("a b:c", "a_b_c"),
        ("résumé", "r_sum_"),
        ("a\x00b", "a_b"),
        ("C:\\Windows\\x", "C_Windows_x"),
        ("model.conv-1_2", "model.conv-1_2"),
    ],
)
def test_safe_name(name, expected):
    assert safe_name(name) == expected


@given(st.text(max_size=300))
def test_safe_name_is_always_one_plain_file_name(name):
    cleaned = safe_name(name)
    assert SAFE.match(cleaned)
    assert cleaned not in (".", "..")
    assert not cleaned.startswith(".")
    assert 1 <= len(cleaned) <= 120


def test_safe_name_is_capped():
    assert safe_name("x" * 500) == "x" * 120
    assert safe_name("x" * 500, max_chars=10) == "x" * 10


def test_stem_allocator():
    stems = StemAllocator()
    assert stems.allocate("cat") == "cat"
    assert stems.allocate("cat") == "cat-2"
    assert stems.allocate("dog") == "dog"
    assert stems.allocate("cat") == "cat-3"
    assert stems.allocate("CAT") == "CAT-4"  # case-insensitive file systems
    assert stems.allocate("cat-5") == "cat-5"
    assert stems.allocate("cat") == "cat-6"  # skips a name already taken explicitly
    assert stems.allocate("") == "input"
    assert stems.allocate("../x") == ".._x"  # a separator (API callers only) cannot nest
    assert StemAllocator().allocate("cat") == "cat"  # counted per allocator (per run)


def _listing(folder):
    return sorted(os.listdir(folder))


def test_atomic_open_writes_on_success(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_open(target) as handle:
        handle.write(b"abc")
        assert not target.exists()  # not there until the block ends
    assert target.read_bytes() == b"abc"
    assert _listing(tmp_path) == ["out.bin"]
    atomic_write_text(target, "é")
    assert target.read_text(encoding="utf-8") == "é"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_open_leaves_nothing_on_failure(tmp_path, error):
    target = tmp_path / "new.bin"
    with pytest.raises(type(error)), atomic_open(target) as handle:
        handle.write(b"half")
        raise error
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_atomic_open_keeps_the_old_file_on_failure(tmp_path, error):
    target = tmp_path / "old.bin"
    target.write_bytes(b"previous")
    with pytest.raises(type(error)), atomic_open(target) as handle:
        handle.write(b"new but unfinished")
        raise error
    assert target.read_bytes() == b"previous"
    assert _listing(tmp_path) == ["old.bin"]


def test_atomic_write_replaces_an_existing_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _listing(tmp_path) == ["f.txt"]


def test_atomic_open_in_a_missing_folder_is_an_output_error(tmp_path):
    target = tmp_path / "missing" / "f.txt"
    with pytest.raises(OutputError) as info, atomic_open(target):
        pass
    assert str(info.value).startswith(f"{target}: ")
    assert not (tmp_path / "missing").exists()


def test_atomic_open_onto_a_folder_is_an_output_error(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    with pytest.raises(OutputError) as info, atomic_open(target) as handle:
        handle.write(b"x")
    assert str(info.value).startswith(f"{target}: ")
    assert _listing(tmp_path) == ["taken"]  # temporary file removed
    assert _listing(target) == []


def test_ensure_dir(tmp_path):
    nested = tmp_path / "a" / "b" / "c"
    assert ensure_dir(nested) == nested
    assert nested.is_dir()
    assert ensure_dir(nested) == nested  # existing folder is fine


def test_ensure_dir_on_a_file_is_an_error(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(OutputError) as info:
        ensure_dir(file)
    assert str(info.value) == f"{file}: exists and is not a folder"
    below = file / "sub"
    with pytest.raises(OutputError) as info:
        ensure_dir(below)
    assert str(info.value).startswith(f"{below}: cannot write (")


def test_inside(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    assert inside(root, root / "a" / "b.png")
    assert inside(root, root)
    assert not inside(root, root / ".." / "x")
    assert not inside(root, tmp_path / "outside")
    link = root / "link"
    link.symlink_to(tmp_path)
    assert not inside(root, link / "x")  # symlinks are resolved


def test_input_stems_are_kept_as_they_are():
    """SPEC: OUT/<input-stem>/ — only layer names are reduced to [A-Za-z0-9._-]."""
    stems = StemAllocator()
    assert stems.allocate("猫") == "猫"
    assert stems.allocate("犬") == "犬"
    assert stems.allocate("my photo") == "my photo"
    assert stems.allocate("..") == "input"
    assert stems.allocate("a/b") == "a_b"
