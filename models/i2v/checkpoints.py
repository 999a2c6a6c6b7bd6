"""Reading the released MotionRAG checkpoints safely and converting them once to safetensors.

Layout in the models folder the caller passes (the HF repository's own paths, so
`huggingface-cli download MCG-NJU/MotionRAG --include "checkpoints/SVD/*" --local-dir <folder>` fits):

    <folder>/checkpoints/CogVideoX/{motion_proj,motion_transformer,Motion-Adapter,17_frames}.ckpt
    <folder>/checkpoints/SVD/{motion_proj,motion_transformer,Motion-Adapter}.ckpt

`.ckpt` files are read with torch.load(weights_only=True): tensors and plain containers only, never
arbitrary pickled objects. Each is checked key by key against its layout, then written once as
`<stem>.safetensors` beside it (atomically), which later loads prefer.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ...common.atomic import atomic_write
from .errors import CheckpointError, CheckpointKeyError, CheckpointNotFoundError
from .configs import MOTION_PROJECTOR, PAPER_CAMA
from .layouts import (FILES, HOST_PREFIX, Layout, cogvideox_17_frames_layout, layout_for, motion_adapter_layout,
                      motion_proj_layout, motion_transformer_layout)

HF_REPO_ID = "MCG-NJU/MotionRAG"
CHECKPOINTS_SUBDIR = "checkpoints"


@dataclass
class LoadReport:
    """Where a state dict came from and what was noticed on the way."""
    path: Path
    source: str                     # "safetensors", "ckpt" or "download"
    converted_to: Path | None = None
    optional_present: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def checkpoint_path(models_dir: str | os.PathLike, base: str, stem: str) -> Path:
    """`<models_dir>/checkpoints/<base>/<stem>.ckpt` for a released file."""
    if base not in FILES or stem not in FILES[base]:
        known = {b: list(s) for b, s in FILES.items()}
        raise ValueError(f"unknown MotionRAG checkpoint {base}/{stem}; known: {known}")
    return Path(models_dir) / CHECKPOINTS_SUBDIR / base / f"{stem}.ckpt"


def read_ckpt(path: str | os.PathLike) -> dict:
    """The tensors of a `.ckpt` (a raw state dict, or a Lightning checkpoint's `state_dict`),
    refusing any file whose pickle holds more than tensors and plain containers."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError("checkpoint file not found", f"{path}")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)   # legacy (non-zip) format
    except pickle.UnpicklingError as e:
        detail = [ln for ln in str(e).splitlines() if "global" in ln.lower()]
        if "weights only load failed" not in str(e).lower() or not detail:
            reason = [ln for ln in str(e).splitlines() if "unsupported" in ln.lower()] or [str(e)]
            raise CheckpointError(path, f"not a readable torch checkpoint ({reason[0].strip()})") from None
        raise CheckpointError(
            path, f"refused to load: the file holds pickled objects other than tensors and plain "
            f"containers, and MotionRAG never unpickles those"
            + (f" ({detail[0].strip()})" if detail else "")) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise CheckpointError(
            path, f"expected a state dict (or a dict with 'state_dict'), got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"the state dict has {len(bad)} entries that are not name -> tensor, "
                              f"e.g. {bad[:3]!r}")
    return dict(state)


def check_layout(state: dict, layout: Layout, *, what: str) -> list[str]:
    """Raise CheckpointKeyError unless every key is accounted for; returns the optional groups present."""
    keys = set(state)
    expected = layout.all_keys()
    missing = set(layout.required) - keys
    present = []
    for group, group_keys in layout.optional.items():
        have = keys & set(group_keys)
        if have:
            present.append(group)
            missing |= set(group_keys) - have       # a partial group is a damaged file
    unexpected = keys - set(expected)
    mismatched = [(k, expected[k], tuple(state[k].shape)) for k in keys & set(expected)
                  if tuple(state[k].shape) != tuple(expected[k])]
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(what, missing, unexpected, mismatched)
    return present


_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def write_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Stream tensors into a safetensors file, atomically (no second in-memory copy of the weights)."""
    import torch

    names = sorted(tensors)
    header: dict = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name in names:
        t = tensors[name]
        dtype = _ST_DTYPES.get(str(t.dtype).removeprefix("torch."))
        if dtype is None:
            raise CheckpointError(name, f"dtype {t.dtype} cannot be written to safetensors")
        size = t.numel() * t.element_size()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)          # keep the data 8-byte aligned
    with atomic_write(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in names:
            t = tensors[name].detach().to("cpu").contiguous()
            if t.numel():
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def read_safetensors(path: str | os.PathLike) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:   # safetensors raises its own error types
        raise CheckpointError(path, f"not a readable safetensors file ({type(e).__name__}: {e})") from None


def _download(models_dir: Path, base: str, stem: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise OSError("huggingface_hub is not installed") from e
    got = hf_hub_download(HF_REPO_ID, f"{CHECKPOINTS_SUBDIR}/{base}/{stem}.ckpt", local_dir=str(models_dir))
    return Path(got)


def load_checkpoint(models_dir: str | os.PathLike, base: str, stem: str, *, layout: Layout | None = None,
                    download: bool = False, convert: bool = True) -> tuple[dict, LoadReport]:
    """The checked state dict of `checkpoints/<base>/<stem>` with the released key names.

    Prefers `<stem>.safetensors`, else reads `<stem>.ckpt` (downloading it from the Hugging Face
    repository first when `download` is true and it is missing) and converts it once.
    """
    ckpt = checkpoint_path(models_dir, base, stem)
    st = ckpt.with_suffix(".safetensors")
    layout = layout or layout_for(base, stem)
    what = f"MotionRAG {base}/{stem}"
    if st.is_file():
        state = read_safetensors(st)
        report = LoadReport(st, "safetensors")
        report.optional_present = check_layout(state, layout, what=f"{what} ({st})")
        return state, report
    source = "ckpt"
    if not ckpt.is_file():
        reason = "downloading is off"
        if download:
            try:
                ckpt = _download(Path(models_dir), base, stem)
                source = "download"
            except Exception as e:   # no network, no hub client, gated file: all end in the message below
                reason = f"the download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        if source != "download":
            raise CheckpointNotFoundError(
                what, f"missing. Download 'checkpoints/{base}/{stem}.ckpt' from "
                f"https://huggingface.co/{HF_REPO_ID} and put it at {ckpt} "
                f"(or a converted {st.name} beside it); {reason}.")
    state = read_ckpt(ckpt)
    report = LoadReport(ckpt, source)
    report.optional_present = check_layout(state, layout, what=f"{what} ({ckpt})")
    if convert:
        try:
            write_safetensors(st, state, {"format": "pt", "source": ckpt.name, "motionrag": f"{base}/{stem}"})
            report.converted_to = st
        except OSError as e:
            report.notes.append(f"could not write {st} ({e}); the .ckpt will be read again next time")
    return state, report


def strip_prefix(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# ---- loaders that return ready modules -------------------------------------------------------------

def load_motion_projector(models_dir, base: str, *, config=None, download: bool = False):
    """The stage-1 motion projector (VideoMAE tokens -> motion tokens) with the released weights."""
    from .resampler import Resampler       # imports torch

    config = config or MOTION_PROJECTOR
    state, report = load_checkpoint(models_dir, base, "motion_proj", layout=motion_proj_layout(config),
                                    download=download)
    model = Resampler(config)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False), report


def load_cama(models_dir, base: str, *, config=None, download: bool = False, seed: int = 0):
    """CAMA with the released weights. The released file has no trained start block (upstream never
    saved it); a fixed `seed` then makes the substitute reproducible, and the report says so."""
    import torch

    from .cama import MotionContextTransformer        # imports torch

    config = config or PAPER_CAMA
    state, report = load_checkpoint(models_dir, base, "motion_transformer",
                                    layout=motion_transformer_layout(config), download=download)
    model = MotionContextTransformer(config)
    if "sos_token" not in state:
        gen = torch.Generator().manual_seed(seed)
        state = dict(state)
        state["sos_token"] = torch.randn(model.sos_token.shape, generator=gen) / config.d_model ** 0.5
        report.notes.append(f"sos_token is not in the checkpoint: using a start block drawn with seed {seed}")
    model.load_state_dict(state)
    return model.eval().requires_grad_(False), report


def load_motion_adapter(injection, models_dir, *, base: str | None = None, config=None, projector=None,
                        download: bool = False):
    """Load Motion-Adapter into an injection (from adapter.inject_cogvideox / inject_svd). The file is
    checked against its paper layout (or `config`, `projector` for the stage-1 projector copy it
    carries) and against the processors actually installed."""
    base = base or injection.kind
    layout = motion_adapter_layout(base, config, projector or MOTION_PROJECTOR)
    state, report = load_checkpoint(models_dir, base, "Motion-Adapter", layout=layout, download=download)
    injection.load_adapter_state_dict(strip_prefix(state, HOST_PREFIX[base]),
                                      what=f"MotionRAG {base}/Motion-Adapter vs the installed processors")
    return report


def load_cogvideox_17_frames(transformer, models_dir, *, config=None, download: bool = False):
    """Apply the 17-frame fine-tune (attn1 to_q/to_k/to_v of every block) to a CogVideoX-5B-I2V transformer."""
    import torch

    layout = cogvideox_17_frames_layout(config) if config is not None else cogvideox_17_frames_layout()
    state, report = load_checkpoint(models_dir, "CogVideoX", "17_frames", layout=layout, download=download)
    state = strip_prefix(state, HOST_PREFIX["CogVideoX"])
    params = dict(transformer.named_parameters())
    missing = [k for k in state if k not in params]
    mismatched = [(k, tuple(params[k].shape), tuple(v.shape)) for k, v in state.items()
                  if k in params and params[k].shape != v.shape]
    if missing or mismatched:
        raise CheckpointKeyError("MotionRAG CogVideoX/17_frames vs the given transformer", (), missing, mismatched)
    with torch.no_grad():
        for k, v in state.items():
            if params[k].is_meta:
                raise CheckpointError(k, f"the transformer is on the meta device; load its weights first")
            params[k].copy_(v)
    return report
