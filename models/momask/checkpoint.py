"""Loading a released MoMask folder (checkpoints/t2m or checkpoints/kit as its download unzips):

    <folder>/rvq_nq6_dc512_nc512_noshare_qdp0.2/opt.txt, model/net_best_fid.tar, meta/mean.npy, meta/std.npy
    <folder>/t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns/opt.txt, model/latest.tar    (masked transformer)
    <folder>/tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw/opt.txt, model/net_best_fid.tar  (residual transformer)
    <folder>/length_estimator/model/finest.tar                                            (optional)

The network folders are found by what they hold, not by their names: a folder with an opt.txt that
has `latent_dim` is a transformer, masked or residual by the key its checkpoint stores the weights
under; the tokenizer folder is the one the transformers' `vq_name` names.

`.tar` files are read with torch.load(weights_only=True) only: tensors and plain containers, never
other pickled objects. Every key is checked against our modules (missing, unexpected and misshaped
keys are named). Each file is then written once, atomically, as `<stem>.safetensors` beside it
(metadata: role and the source file's size and mtime); later loads read that instead while the source is
unchanged or gone. A folder we cannot write to is loaded from the .tar files every time.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ...common.atomic import atomic_write
from ...common.errors import InputError
from .config import (DATASETS, MoMaskConfig, dataset_of, read_opt, rvq_config, text_encoder_of,
                     transformer_config)
from .length_estimator import LengthEstimator
from .model import MoMaskModel
from .rvq import RVQVAE
from .transformers import MaskedTransformer, ResidualTransformer

FORMAT = "motionrag-momask"
INPUT = "folder"

# role -> (what we call it, keys the reference stores its weights under, files in preference order)
ROLES = {
    "rvq": ("MoMask RVQ-VAE tokenizer", ("vq_model", "net"), ("net_best_fid",)),
    "masked": ("MoMask masked transformer", ("t2m_transformer", "trans"), ("latest", "net_best_fid")),
    "residual": ("MoMask residual transformer", ("res_transformer",), ("net_best_fid", "latest")),
    "length": ("MoMask length estimator", ("estimator",), ("finest",)),
}
# What a released module's state dict starts with, to say what a foreign file holds instead.
EXPECTED_KEYS = {
    "rvq": "encoder.model.*, decoder.model.*, quantizer.layers.N.codebook",
    "masked": "token_emb.weight, cond_emb.*, seqTransEncoder.layers.N.*, output_process.*",
    "residual": "embed_proj_shared_weight, token_embed_weight_, output_proj_weight_, quant_emb.*, seqTransEncoder.*",
    "length": "output.0.weight ... output.11.bias",
}


def describe(top_keys, state_keys=()) -> str:
    """A short account of what a checkpoint holds, naming the known layouts it could be mistaken for."""
    top = set(top_keys)
    keys = list(state_keys)
    prefixes = {k.split(".")[0] for k in keys}
    if top & {"t2m_transformer_aux", "t2m_transformer_ts", "res_transformer_aux", "res_transformer_ts"}:
        return "ReMoMask's 1D/2D transformers (keys " + ", ".join(sorted(top)[:4]) + ")"
    if prefixes & {"encoder1d", "encoder2d", "quantizer1d", "quantizer2d", "decoder1d", "decoder2d", "linear_merge"}:
        return "ReMoMask's dual-stream (1D + 2D part) tokenizer (keys " + ", ".join(sorted(prefixes)[:5]) + ")"
    if "vqvae" in prefixes:
        return "T2M-GPT's single-codebook VQ-VAE (keys vqvae.*)"
    if prefixes & {"trans_base", "trans_head"}:
        return "T2M-GPT's GPT transformer (keys trans_base.*, trans_head.*)"
    if keys:
        return f"an unrecognised layout ({len(keys)} keys, e.g. {', '.join(keys[:4])})"
    return "top-level keys " + (", ".join(repr(k) for k in sorted(map(str, top))[:6]) or "none")


def _torch_load(path: Path, expected: str):
    """torch.load(weights_only=True), its failures as InputError naming the file and what was expected."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only load failed" in text.lower():
            detail = next((ln.strip() for ln in text.splitlines() if "global" in ln.lower()), "")
            raise InputError(INPUT, f"{path}: refused: the file holds pickled objects other than tensors and plain "
                                    f"containers, which MotionRAG never unpickles{f' ({detail})' if detail else ''}; "
                                    f"{expected}") from None
        raise InputError(INPUT, f"{path}: not a readable torch checkpoint, truncated or corrupt ({text.strip()[:200]});"
                                f" {expected}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise InputError(INPUT, f"{path}: not a readable torch checkpoint, truncated or corrupt "
                                f"({type(exc).__name__}: {str(exc).strip()[:200]}); {expected}") from None


def read_tar(path: Path, role: str, obj=None) -> dict:
    """The state dict of a released `.tar`, read with weights_only=True (anything else is refused);
    `obj`: the file's content when it was already read."""
    what, model_keys, _ = ROLES[role]
    expected = f"expected a {what} checkpoint (a dict with {' or '.join(repr(k) for k in model_keys)})"
    if obj is None:
        obj = _torch_load(path, expected)
    if not isinstance(obj, dict):
        raise InputError(INPUT, f"{path}: holds a {type(obj).__name__}; {expected}")
    key = next((k for k in model_keys if k in obj), None)
    if key is None:
        state = next((v for v in obj.values() if isinstance(v, dict)), {})
        found = describe(obj.keys(), [k for k in state if isinstance(k, str)])
        raise InputError(INPUT, f"{path}: {expected}; found {found}")
    state = obj[key]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise InputError(INPUT, f"{path}: {key!r} is not a name -> tensor state dict; {expected}")
    return state


def check_state(module: torch.nn.Module, state: dict, path: Path, role: str) -> dict:
    """The state with every key and shape checked against `module` (float tensors as float32); CLIP
    weights (`clip_model.*`, which the reference strips before saving) are ignored."""
    what = ROLES[role][0]
    state = {k: v for k, v in state.items() if not k.startswith("clip_model.")}
    want = module.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k].shape)})"
             for k in sorted(set(want) & set(state)) if state[k].shape != want[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("misshaped", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}")
        found = describe((), list(state)) if missing and unexpected else f"{len(state)} keys"
        raise InputError(INPUT, f"{path}: does not match the {what} its opt.txt describes (keys "
                                f"{EXPECTED_KEYS[role]}); found {found}: " + "; ".join(parts))
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _converted(path: Path) -> Path:
    return path.with_suffix(".safetensors")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _read_converted(tar: Path, role: str) -> dict | None:
    """The safetensors copy of `tar` if it is ours, for this role, and made from the current file."""
    st = _converted(tar)
    if not st.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(st), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or meta.get("role") != role:
                return None
            if tar.is_file() and meta.get("source_stamp") != _stamp(tar):
                return None                           # the .tar was replaced since: convert again
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception:                                 # a damaged copy is ignored and rewritten
        return None


def _write_converted(tar: Path, role: str, state: dict) -> bool:
    from safetensors.torch import save

    meta = {"format": FORMAT, "role": role, "source": tar.name, "source_stamp": _stamp(tar)}
    data = save({k: v.contiguous() for k, v in state.items()}, metadata=meta)
    try:
        with atomic_write(_converted(tar)) as f:
            f.write(data)
    except OSError:
        return False
    return True


def load_state(module: torch.nn.Module, model_dir: Path, role: str, convert: bool = True,
               preloaded: dict | None = None) -> Path:
    """Load the role's weights from `model_dir` into `module` (strictly, assigning the loaded tensors,
    so `module` may have been built on the meta device); returns the file used. `preloaded`: {.tar
    path: what torch.load gave}, for files already read."""
    stems = ROLES[role][2]
    tars = [model_dir / f"{s}.tar" for s in stems]
    for tar in tars:
        state = _read_converted(tar, role)
        if state is not None:
            module.load_state_dict(check_state(module, state, _converted(tar), role), assign=True)
            return _converted(tar)
    tar = next((t for t in tars if t.is_file()), None)
    if tar is None:
        raise InputError(INPUT, f"{model_dir}: no {' or '.join(t.name for t in tars)}; expected the "
                                f"{ROLES[role][0]} as MoMask's download unzips it")
    state = check_state(module, read_tar(tar, role, (preloaded or {}).get(tar)), tar, role)
    module.load_state_dict(state, assign=True)
    if convert:
        _write_converted(tar, role, state)
    return tar


def _transformer_role(model_dir: Path, preloaded: dict) -> str | None:
    """'masked' or 'residual' from what the folder's checkpoint holds (its safetensors copy's
    metadata when there is one), None when it holds neither. A .tar read here is kept in `preloaded`."""
    from safetensors import safe_open

    for role in ("masked", "residual"):
        for stem in ROLES[role][2]:
            st = model_dir / f"{stem}.safetensors"
            if st.is_file():
                try:
                    with safe_open(str(st), framework="pt") as f:
                        if (f.metadata() or {}).get("role") == role:
                            return role
                except Exception:
                    pass
    for stem in ("latest", "net_best_fid"):
        tar = model_dir / f"{stem}.tar"
        if tar.is_file():
            obj = _torch_load(tar, "expected a MoMask masked or residual transformer checkpoint (a dict with "
                                   "'t2m_transformer' or 'res_transformer')")
            preloaded[tar] = obj
            if isinstance(obj, dict):
                if any(k in obj for k in ROLES["masked"][1]):
                    return "masked"
                if any(k in obj for k in ROLES["residual"][1]):
                    return "residual"
    return None


def find_parts(folder: Path, preloaded: dict | None = None) -> dict:
    """{'rvq', 'masked', 'residual': folder, 'length': folder or None} inside a MoMask folder.
    .tar files read to tell the transformers apart are put in `preloaded` ({path: content})."""
    preloaded = {} if preloaded is None else preloaded
    if not folder.is_dir():
        raise InputError(INPUT, f"{folder}: not a folder; expected a MoMask checkpoints folder (e.g. checkpoints/t2m "
                                f"from MoMask's prepare/download_models.sh)")
    transformers = [d for d in sorted(folder.iterdir())
                    if d.is_dir() and (d / "opt.txt").is_file() and "latent_dim" in read_opt(d / "opt.txt")]
    found: dict = {"masked": [], "residual": []}
    for d in transformers:
        role = _transformer_role(d / "model", preloaded)
        if role is None:
            found.setdefault("unknown", []).append(d)
        else:
            found[role].append(d)
    for role in ("masked", "residual"):
        if len(found[role]) != 1:
            what = ROLES[role][0]
            if not found[role]:
                extra = "" if not found.get("unknown") else \
                    f" ({', '.join(d.name for d in found['unknown'])} hold no MoMask transformer weights)"
                raise InputError(INPUT, f"{folder}: no {what} folder (a folder with opt.txt and model/"
                                        f"{ROLES[role][2][0]}.tar){extra}")
            raise InputError(INPUT, f"{folder}: {len(found[role])} {what} folders ("
                                    f"{', '.join(d.name for d in found[role])}); keep one per model folder")
    masked, residual = found["masked"][0], found["residual"][0]
    vq_names = {read_opt(d / "opt.txt").get("vq_name") for d in (masked, residual)}
    if len(vq_names) != 1 or None in vq_names:
        raise InputError(INPUT, f"{folder}: the transformers name different tokenizers "
                                f"(vq_name {sorted(map(str, vq_names))})")
    rvq = folder / str(vq_names.pop())
    if not (rvq / "opt.txt").is_file():
        raise InputError(INPUT, f"{folder}: the transformers were trained on the tokenizer {rvq.name!r}, which is "
                                f"not there (expected {rvq}/opt.txt, model/net_best_fid.tar, meta/mean.npy, std.npy)")
    length = folder / "length_estimator"
    return {"rvq": rvq, "masked": masked, "residual": residual, "length": length if length.is_dir() else None}


def read_stats(rvq_dir: Path, dim_pose: int) -> tuple[np.ndarray, np.ndarray]:
    """meta/mean.npy and meta/std.npy (the tokenizer's training statistics, not the dataset's)."""
    out = []
    for name in ("mean", "std"):
        path = rvq_dir / "meta" / f"{name}.npy"
        if not path.is_file():
            raise InputError(INPUT, f"{path}: missing; MoMask de-normalises with the tokenizer's meta/mean.npy "
                                    f"and meta/std.npy")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(INPUT, f"{path}: not a readable .npy array ({exc})") from None
        if arr.shape != (dim_pose,) or not np.issubdtype(arr.dtype, np.floating) or not np.isfinite(arr).all():
            raise InputError(INPUT, f"{path}: shape {arr.shape} {arr.dtype}; expected {dim_pose} finite floats "
                                    f"(the feature width of this tokenizer)")
        if name == "std" and not (arr > 0).all():
            raise InputError(INPUT, f"{path}: has values <= 0; a standard deviation must be positive")
        out.append(arr)
    return out[0], out[1]


def load_momask(folder: str | os.PathLike, device: str | torch.device = "cpu", convert: bool = True) -> MoMaskModel:
    """A released MoMask model folder -> MoMaskModel (every key checked; converted once to safetensors)."""
    folder = Path(folder)
    preloaded: dict = {}
    parts = find_parts(folder, preloaded)
    rvq_opt = read_opt(parts["rvq"] / "opt.txt")
    rvq_cfg = rvq_config(rvq_opt, parts["rvq"] / "opt.txt")
    dataset = dataset_of(rvq_opt, parts["rvq"] / "opt.txt")
    masked_cfg = transformer_config(read_opt(parts["masked"] / "opt.txt"), parts["masked"] / "opt.txt", rvq_cfg,
                                    residual=False)
    residual_cfg = transformer_config(read_opt(parts["residual"] / "opt.txt"), parts["residual"] / "opt.txt", rvq_cfg,
                                      residual=True)
    text_encoder, text_dim = text_encoder_of(read_opt(parts["masked"] / "opt.txt"), parts["masked"] / "opt.txt")
    config = MoMaskConfig(dataset=dataset, rvq=rvq_cfg, masked=masked_cfg, residual=residual_cfg,
                          text_encoder=text_encoder, text_feature_dim=text_dim)
    mean, std = read_stats(parts["rvq"], DATASETS[dataset]["dim_pose"])

    # built on the meta device (no time spent on random initialisation), then given the loaded tensors
    with torch.device("meta"):
        rvq, masked = RVQVAE(rvq_cfg), MaskedTransformer(masked_cfg)
        residual = ResidualTransformer(residual_cfg)
        length = LengthEstimator() if parts["length"] is not None else None
    load_state(rvq, parts["rvq"] / "model", "rvq", convert)
    load_state(masked, parts["masked"] / "model", "masked", convert, preloaded)
    load_state(residual, parts["residual"] / "model", "residual", convert, preloaded)
    preloaded.clear()
    if length is not None:
        load_state(length, parts["length"] / "model", "length", convert)
    model = MoMaskModel(config, rvq, masked, residual, length, mean, std, source=str(folder))
    return model.to(device)


__all__ = ["load_momask", "find_parts", "read_tar", "check_state", "load_state", "read_stats", "describe", "ROLES",
           "FORMAT"]
