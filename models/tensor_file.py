"""What a safetensors weights file holds, read from its header alone (no tensor is loaded), so that a
model's config can be checked against its weights before any module is built.

A config.json is small and easy to edit; the modules it describes are not: `layers: 1000000` would
allocate until memory runs out. The weights file, by contrast, really holds a fixed number of tensors of
fixed shapes. Loaders therefore (1) keep every size within sane bounds, (2) compare the sizes that
multiply memory (layer counts, widths) with the file's header, naming the field that disagrees, and only
then (3) build the model, whose allocation is then at most about the file's size.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..common.errors import InputError

MAX_HEADER_BYTES = 100 << 20       # safetensors' own limit on the JSON header
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def read_header(path: str | os.PathLike, input: str | None = None,
                error=InputError) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} of a safetensors file; every offset checked against the file's size.
    A bad file raises error(input, message) (a loader's own InputError subclass)."""
    path = Path(path)
    what = input or str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise error(what, f"not a safetensors file (header length {n}, file {size} bytes)")
            raw = json.loads(f.read(n).decode("utf-8"))
    except OSError as exc:
        raise error(what, f"cannot be read ({exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise error(what, "not a safetensors file (its header is not JSON)") from None
    if not isinstance(raw, dict):
        raise error(what, "not a safetensors file (its header is not a JSON object)")
    out, data = {}, size - 8 - n
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, stop) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
            count = 1
            for d in shape:
                count *= d
            ok = dtype in _DTYPE_BYTES and min(shape, default=0) >= 0 and 0 <= start <= stop <= data \
                and stop - start == count * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise error(what, f"tensor {name!r}: its header entry does not fit the file ({size} bytes)")
        out[name] = (dtype, shape)
    return out


def layer_count(header: dict, prefix: str) -> int:
    """How many numbered blocks `prefix<N>.` the file holds (e.g. prefix 'masked.blocks.')."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for m in map(pattern.match, header) if m}
    return len(found)


def dim(header: dict, key: str, axis: int) -> int | None:
    """Size of `key` along `axis` in the file, or None when the file has no such tensor."""
    shape = header.get(key, (None, ()))[1]
    return shape[axis] if -len(shape) <= axis < len(shape) else None


def check_bounds(values: dict[str, int], limits: dict[str, int], error=InputError) -> None:
    """Refuse sizes past sane limits (`error(field, message)`), before anything is compared or built."""
    for field, value in values.items():
        top = limits.get(field)
        if top is not None and isinstance(value, int) and value > top:
            raise error(field, f"{value} is past the sane limit {top}; the config is damaged or not for this model")


def check_against_file(expected: list[tuple[str, object, object]], source: str, error=InputError) -> None:
    """expected: (config field, config value, what the weights file holds). Refuse the first that differs,
    naming the field; a None from the file (no such tensor) is left to the full key check after building."""
    for field, want, have in expected:
        if have is not None and want != have:
            raise error(field, f"config says {want!r}, but the weights file {source} holds {have!r}")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def refuse_pickled_weights(folder: str | os.PathLike, what: str, error=InputError) -> None:
    """A model folder (transformers layout) must hold its weights as safetensors: a pickle can run code
    when loaded, so a folder with only pickled weights is refused before transformers reads it (its
    loaders are then called with use_safetensors=True, so they never fall back to the pickle)."""
    folder = Path(folder)
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        return                                  # the loader reports the missing folder in its own words
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise error(str(folder), f"refused to load: the {what} weights are pickled ({', '.join(pickles)}), and "
                    "MotionRAG never unpickles model files; use a folder with model.safetensors")


def check_finite(tensors: dict, source: str, error=InputError) -> None:
    """Refuse weights holding NaN or infinity (a diverged or damaged save): sampling would fail much later."""
    import torch

    for name, t in tensors.items():
        if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise error(source, f"tensor {name!r} holds NaN or infinite values; the weights are damaged "
                        "(a diverged training run?)")


__all__ = ["refuse_pickled_weights", "read_header", "layer_count", "dim", "check_bounds", "check_against_file", "check_finite"]
