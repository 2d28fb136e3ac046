"""``.npy`` / ``.npz`` tensors: fed as they are, never unpickled."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..formatting import format_shape
from ..graph import ModelInput


def read_tensor(path: Path) -> np.ndarray:
    """Load a ``.npy`` file or a ``.npz`` holding exactly one array (``allow_pickle=False``)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a tensor file")
    _check_signature(path)
    try:
        loaded = np.load(path, allow_pickle=False)
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


def _check_signature(path: Path) -> None:
    """Refuse files that are neither .npy nor .npz before numpy sees them.

    ``np.load`` treats anything without a NumPy or zip signature as a pickle, so without this
    check random bytes or a text file would be reported as "Python objects".
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head:
        raise InputError(f"{path}: empty file, not a .npy/.npz file")
    if head.startswith(_NPY_MAGIC) or head[:4] in _ZIP_MAGICS:
        return
    if head[:1] == b"\x80":  # pickle protocol 2+
        raise InputError(f"{path}: holds a Python pickle, not numbers (fmviz never unpickles)")
    raise InputError(f"{path}: not a .npy or .npz file (no NumPy or zip signature)")


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

    raw = read_tensor(path)
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

