"""Payload arrays of database entries, in safetensors shards.

A payload is any numeric array attached to an entry under a kind name: "joints" (every
entry), "features" (HumanML3D 263-d, where the source had them), and whatever later code
adds ("motion_tokens", "appearance_tokens", ...) through EntrySpec.payloads or
writer.add_payloads. Nothing here knows what a kind means.

Storage: within a shard, all arrays of one kind and dtype are flattened and concatenated
into one 1-D tensor "<kind>.<dtype>"; the SQLite `payloads` table records, per entry and
kind, the shard, tensor, [start, stop) and the original shape. A shard is written when its
buffered arrays pass `max_shard_bytes`, so memory stays bounded on large builds. Reading
opens shards with safetensors' safe_open (memory-mapped) and copies out one slice.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .db_format import fsync_file, generation_file, validate_kind
from .errors import DatabaseCorruptError, RetrievalError

DEFAULT_MAX_SHARD_BYTES = 256 << 20
_DTYPES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "uint16", "uint32", "uint64", "bool"}


def as_payload_array(value: Any, kind: str, what: str, input: str = "entries") -> np.ndarray:
    """`value` as a little-endian contiguous array of a stored dtype; `what` (e.g. "entry 'walk'")
    starts the message of an error about the argument named `input`."""
    try:
        arr = np.asarray(value)
    except Exception as exc:   # noqa: BLE001 - any conversion failure is bad input
        raise RetrievalError(input, f"{what}: payload {kind!r} is not an array ({exc})") from None
    if arr.dtype.name not in _DTYPES:
        raise RetrievalError(input, f"{what}: payload {kind!r} has dtype {arr.dtype}; expected one of {sorted(_DTYPES)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise RetrievalError(input, f"{what}: payload {kind!r} contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))


class ShardWriter:
    """Buffers payload arrays of one generation and writes them as numbered shards."""

    def __init__(self, folder: Path, generation: int, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        self.folder = folder
        self.generation = generation
        self.max_shard_bytes = max_shard_bytes
        self.written: list[str] = []
        self._shard = 0
        self._buffers: dict[str, list[np.ndarray]] = {}
        self._lengths: dict[str, int] = {}
        self._bytes = 0

    @property
    def current_shard(self) -> str:
        return generation_file("payload", self.generation, self._shard)

    def add(self, entry_id: int, kind: str, array: np.ndarray) -> tuple:
        """Buffer one array; returns its row for the `payloads` table."""
        validate_kind(kind)
        tensor = f"{kind}.{array.dtype.name}"
        start = self._lengths.get(tensor, 0)
        flat = array.reshape(-1)
        self._buffers.setdefault(tensor, []).append(flat)
        self._lengths[tensor] = start + flat.size
        self._bytes += flat.nbytes
        row = (entry_id, kind, self.current_shard, tensor, start, start + flat.size, json.dumps(list(array.shape)))
        if self._bytes >= self.max_shard_bytes:
            self.flush()
        return row

    def flush(self) -> None:
        if not self._buffers:
            return
        from safetensors.numpy import save_file

        tensors = {name: np.concatenate(parts) for name, parts in self._buffers.items()}
        path = self.folder / self.current_shard
        save_file(tensors, str(path), metadata={"format": "motionrag-payloads", "generation": str(self.generation)})
        fsync_file(path)
        self.written.append(path.name)
        self._shard += 1
        self._buffers.clear()
        self._lengths.clear()
        self._bytes = 0

    def close(self) -> list[str]:
        self.flush()
        return list(self.written)


class PayloadReader:
    """Reads payload slices from a database's shards; shards are opened on first use."""

    def __init__(self, folder: Path, shards: list[str], check=None):
        self.folder = folder
        self.shards = set(shards)
        self._check = check          # check(shard): called once, before a shard is first read (its checksum)
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _handle(self, shard: str):
        with self._lock:
            handle = self._open.get(shard)
            if handle is None:
                if shard not in self.shards:
                    raise DatabaseCorruptError("motion_db", f"payload shard {shard!r} is not listed in the manifest of {self.folder}")
                from safetensors import safe_open

                if self._check is not None:
                    self._check(shard)
                try:
                    handle = safe_open(str(self.folder / shard), framework="numpy")
                except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
                    raise DatabaseCorruptError("motion_db", f"payload shard {self.folder / shard} cannot be read: {exc}") from None
                self._open[shard] = handle
            return handle

    def tensor_length(self, shard: str, tensor: str) -> int | None:
        """The first dimension of `tensor` in `shard` (verification compares it with the payload rows
        that point into it), or None when the shard holds no such tensor."""
        handle = self._handle(shard)
        if tensor not in handle.keys():
            return None
        return int(handle.get_slice(tensor).get_shape()[0])

    def read(self, shard: str, tensor: str, start: int, stop: int, shape: str) -> np.ndarray:
        handle = self._handle(shard)
        try:
            flat = handle.get_slice(tensor)[start:stop]
        except Exception as exc:  # noqa: BLE001
            raise DatabaseCorruptError("motion_db", f"payload shard {shard}: cannot read {tensor}[{start}:{stop}]: {exc}") from None
        dims = tuple(json.loads(shape))
        if int(np.prod(dims, dtype=np.int64)) != flat.size:
            raise DatabaseCorruptError("motion_db", f"payload shard {shard}: {tensor}[{start}:{stop}] does not hold shape {dims}")
        return np.array(flat).reshape(dims)

    def close(self) -> None:
        with self._lock:
            self._open.clear()
