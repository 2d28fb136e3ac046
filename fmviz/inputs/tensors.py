"""``.npy`` / ``.npz`` tensors: fed as they are, never unpickled."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..graph import ModelInput
from ..text import format_shape
from .safe import check_bytes, max_input_bytes, open_regular


def read_tensor(path: Path, target: ModelInput | None = None) -> np.ndarray:
    """Load a ``.npy`` file or a ``.npz`` holding exactly one array (``allow_pickle=False``).

    Only a regular file is read (a FIFO or device is refused without blocking). The shape the
    file declares is checked against ``target`` (when given) and the input budget before any
    data is read or inflated.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a tensor file")
    with open_regular(path) as handle:
        _check_signature(handle, path)
        _check_declared(handle, path, target)
        handle.seek(0)
        return _load(handle, path)


def _load(handle, path: Path) -> np.ndarray:
    try:
        loaded = np.load(handle, allow_pickle=False)
    except ValueError as exc:
        if _is_pickle_refusal(exc):
            raise InputError(
                f"{path}: holds Python objects, not numbers (fmviz never unpickles)"
            ) from exc
        raise InputError(f"{path}: not a valid .npy/.npz file ({exc})") from exc
    except MemoryError as exc:  # a header that declares an enormous shape
        raise InputError(f"{path}: declares an array too large to load ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a valid .npy/.npz file ({exc})") from exc
    except Exception as exc:  # numpy parses the header with tokenize/ast: TokenError, ...
        raise InputError(
            f"{path}: not a valid .npy/.npz file ({type(exc).__name__}: {exc})"
        ) from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if len(names) != 1:
                raise InputError(
                    f"{path}: holds {len(names)} arrays ({', '.join(names[:5]) or 'none'}); "
                    "fmviz needs exactly one"
                )
            try:
                array = loaded[names[0]]
            except ValueError as exc:
                if _is_pickle_refusal(exc):
                    raise InputError(
                        f"{path}: array {names[0]!r} holds Python objects (fmviz never unpickles)"
                    ) from exc
                raise InputError(f"{path}: cannot read array {names[0]!r} ({exc})") from exc
            except MemoryError as exc:
                raise InputError(
                    f"{path}: array {names[0]!r} declares a size too large to load ({exc})"
                ) from exc
            except Exception as exc:
                raise InputError(f"{path}: cannot read array {names[0]!r} ({exc})") from exc
            if not isinstance(array, np.ndarray):  # NpzFile returns non-.npy members as bytes
                raise InputError(f"{path}: member {names[0]!r} is not a .npy array")
    else:
        array = loaded
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: dtype {array.dtype} is not numeric")
    return array


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def _check_signature(handle, path: Path) -> None:
    """Refuse files that are neither .npy nor .npz before numpy sees them.

    ``np.load`` treats anything without a NumPy or zip signature as a pickle, so without this
    check random bytes or a text file would be reported as "Python objects".
    """
    try:
        head = handle.read(len(_NPY_MAGIC))
        handle.seek(0)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head:
        raise InputError(f"{path}: empty file, not a .npy/.npz file")
    if head.startswith(_NPY_MAGIC) or head[:4] in _ZIP_MAGICS:
        return
    if head[:1] == b"\x80":  # pickle protocol 2+
        raise InputError(f"{path}: holds a Python pickle, not numbers (fmviz never unpickles)")
    raise InputError(f"{path}: not a .npy or .npz file (no NumPy or zip signature)")


def _npy_header(stream) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype a .npy header declares (reading only the header), else None."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception:  # numpy's own load reports a broken header in its words
        return None
    return tuple(int(d) for d in shape), np.dtype(dtype)


def _check_declared(handle, path: Path, target: ModelInput | None) -> None:
    """Check what a .npy (or a one-member .npz) declares before anything is read or inflated:
    the shape against ``target``, the bytes (a member's declared size too) against the budget."""
    head = handle.read(len(_NPY_MAGIC))
    handle.seek(0)
    if head.startswith(_NPY_MAGIC):
        declared = _npy_header(handle)
        if declared is not None:
            _check_shape(path, *declared, target)
        return
    try:
        archive = zipfile.ZipFile(handle)
    except Exception:  # numpy's own load says what is wrong with the zip
        return
    with archive:
        members = archive.infolist()
        if len(members) != 1:
            return  # refused by name count, nothing inflated
        member = members[0]
        name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
        try:
            with archive.open(member) as stream:
                declared = _npy_header(stream)
        except Exception:
            declared = None
        if declared is not None:
            _check_shape(path, *declared, target, member=name)
        else:  # not a .npy member (numpy would read it whole as bytes): its declared size
            check_bytes((member.file_size,), 1, f"{path}: member {name!r}", max_input_bytes())


def _check_shape(path: Path, shape, dtype: np.dtype, target, member: str | None = None) -> None:
    if dtype.hasobject:
        return  # refused as Python objects when numpy reads it
    if target is not None and not _fits(shape, target.shape):
        raise InputError(
            f"{path}: tensor shape {list(shape)} does not fit input "
            f"{target.name!r} {format_shape(target.shape)}"
        )
    where = f"{path}: array {member!r}" if member is not None else f"{path}: array"
    check_bytes(shape, dtype.itemsize, f"{where} {list(shape)} {dtype}")


def _fits(shape, declared) -> bool:
    """Whether an array of ``shape`` fits an input declared ``declared`` (batch dim optional)."""
    if declared is None:
        return True
    shape = tuple(shape)
    if len(shape) == len(declared) - 1:
        shape = (1, *shape)
    return len(shape) == len(declared) and not any(
        isinstance(want, int) and want > 0 and want != got
        for want, got in zip(declared, shape, strict=True)
    )


def _is_pickle_refusal(exc: ValueError) -> bool:
    return "allow_pickle" in str(exc) or "Object arrays" in str(exc)


def fit_tensor(array: np.ndarray, target: ModelInput, path: Path) -> np.ndarray:
    """Check ``array`` against the input's shape (batch dim optional) and cast it exactly."""
    shape = target.shape
    if shape is not None:
        source_shape = list(array.shape)  # the error shows the file's own shape
        if array.ndim == len(shape) - 1:
            array = array[np.newaxis]
        if array.ndim != len(shape) or any(
            isinstance(want, int) and want > 0 and want != got
            for want, got in zip(shape, array.shape, strict=True)
        ):
            raise InputError(
                f"{path}: tensor shape {source_shape} does not fit input "
                f"{target.name!r} {format_shape(shape)}"
            )
    if array.size == 0:  # a batch of 0 (or a 0-sized dim): nothing to run or draw
        raise InputError(f"{path}: tensor is empty (shape {list(array.shape)})")
    if array.size and array.dtype.kind == "f" and not np.isfinite(array).all():
        count = int((~np.isfinite(array)).sum())
        raise InputError(f"{path}: tensor holds {count} NaN or infinite values")
    return cast_exactly(array, target.dtype, path)


def cast_exactly(array: np.ndarray, dtype: np.dtype | None, path: Path) -> np.ndarray:
    """Cast to ``dtype`` only when every value survives exactly (SPEC: else an error).

    float64 values that are float32 numbers (an array saved after ``astype(np.float32)`` and
    back, integers, halves, ...) pass; anything that would be rounded is refused, so what the
    model sees is always what the file holds.
    """
    if dtype is None or array.dtype == dtype:
        return np.ascontiguousarray(array)
    with np.errstate(all="ignore"):
        cast = array.astype(dtype)
    if not np.array_equal(cast.astype(array.dtype), array):
        raise InputError(
            f"{path}: dtype {array.dtype} cannot be cast exactly to the model's {dtype} "
            f"(save it as {dtype}, e.g. with array.astype(np.{dtype.name}))"
        )
    return np.ascontiguousarray(cast)


def load_tensor_input(path: Path, target: ModelInput):
    from . import PreparedInput

    raw = read_tensor(path, target)
    array = fit_tensor(raw, target, path)
    return PreparedInput(
        path=path,
        kind="tensor",
        array=array,
        preprocess={
            "source_shape": list(raw.shape),
            "source_dtype": str(raw.dtype),
            "batch_added": array.ndim != raw.ndim,
            "cast": None if raw.dtype == array.dtype else f"{raw.dtype}->{array.dtype}",
        },
    )

