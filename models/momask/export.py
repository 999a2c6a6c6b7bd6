"""Writing a model as MoMask's download is laid out, so that `load_momask` reads it unchanged:

    <out>/<rvq name>/opt.txt, model/net_best_fid.tar {'vq_model': state, 'ep': steps}, meta/mean.npy, std.npy
    <out>/<masked name>/opt.txt, model/latest.tar {'t2m_transformer': state, 'ep': steps}
    <out>/<residual name>/opt.txt, model/net_best_fid.tar {'res_transformer': state, 'ep': steps}
    <out>/length_estimator/model/finest.tar {'estimator': state, 'epoch': steps}     (when trained)

The folder names follow MoMask's naming (rvq_nq{Q}_dc{D}_nc{K}_noshare_qdp{p}, ...). The opt.txt files
hold the keys the loader reads (config.py) plus the training's own record: `text_encoder` and
`text_feature_dim` (the text features the networks were trained on, zero-padded to clip_dim), the
seed, the step counts and the database. `.tar` files are torch.save'd dicts of tensors and numbers
(what torch.load(weights_only=True) reads); torch.save writes the same bytes for the same content,
so a seeded training gives files with the same SHA-256.

The folder is written beside `out` under a temporary name and renamed into place: a reader sees the
old folder or the whole new one.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ...common.atomic import atomic_write
from ...common.errors import InputError
from .config import CLIP_TEXT_ENCODER, MoMaskConfig


def folder_names(config: MoMaskConfig, quantize_dropout: float, cond_drop: tuple) -> dict:
    r, m, s = config.rvq, config.masked, config.residual
    rvq = f"rvq_nq{r.num_quantizers}_dc{r.code_dim}_nc{r.nb_code}_noshare_qdp{quantize_dropout:g}"
    return {"rvq": rvq,
            "masked": f"t2m_nlayer{m.n_layers}_nhead{m.n_heads}_ld{m.latent_dim}_ff{m.ff_size}_cdp{cond_drop[0]:g}"
                      f"_rvq{r.num_quantizers}ns",
            "residual": f"tres_nlayer{s.n_layers}_ld{s.latent_dim}_ff{s.ff_size}_rvq{r.num_quantizers}ns"
                        f"_cdp{cond_drop[1]:g}_sw"}


def _value(v) -> str:
    if isinstance(v, float):
        return repr(float(v)) if v != int(v) else f"{v:.1f}"        # 0.2, 1.0: read back as floats
    return str(v)


def opt_text(values: dict) -> str:
    lines = ["------------ Options -------------"]
    for k, v in values.items():
        text = _value(v)
        if "\n" in text or ": " in k:
            raise InputError("opt", f"{k!r}: keys and values of opt.txt must be one line without ': ' in the key")
        lines.append(f"{k}: {text}")
    lines.append("-------------- End ----------------")
    return "\n".join(lines) + "\n"


def _tar_bytes(payload: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def write_momask_folder(out: str | os.PathLike, config: MoMaskConfig, states: dict, mean: np.ndarray,
                        std: np.ndarray, *, steps: dict, record: dict, quantize_dropout: float = 0.2,
                        cond_drop: tuple = (0.1, 0.2), overwrite: bool = False) -> Path:
    """Write `states` ({'rvq', 'masked', 'residual'[, 'length']: state dict}) as a MoMask folder at `out`.
    `steps`: per role, stored as the checkpoints' 'ep'; `record`: extra opt.txt lines (text encoder,
    seed, database, ...), written into every network's opt.txt."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("out", f"{out}: exists; choose a new folder or pass overwrite (--overwrite)")
    if out.exists() and not out.is_dir():
        raise InputError("out", f"{out}: is a file; expected a folder to write the model into")
    names = folder_names(config, quantize_dropout, cond_drop)
    r, m, s = config.rvq, config.masked, config.residual
    common = {"dataset_name": config.dataset, "checkpoints_dir": "."}
    rvq_opt = {"name": names["rvq"], **common, "code_dim": r.code_dim, "nb_code": r.nb_code, "mu": 0.99,
               "down_t": r.down_t, "stride_t": r.stride_t, "width": r.width, "depth": r.depth,
               "dilation_growth_rate": r.dilation_growth_rate, "output_emb_width": r.code_dim,
               "vq_act": r.activation, "vq_norm": "None", "num_quantizers": r.num_quantizers,
               "shared_codebook": False, "quantize_dropout_prob": float(quantize_dropout), **record}

    def transformer_opt(c, residual: bool) -> dict:
        return {"name": names["residual" if residual else "masked"], **common, "vq_name": names["rvq"],
                "latent_dim": c.latent_dim, "n_heads": c.n_heads, "n_layers": c.n_layers, "ff_size": c.ff_size,
                "dropout": float(c.dropout), "cond_drop_prob": float(cond_drop[1 if residual else 0]),
                "share_weight": residual, "gumbel_sample": False, **record}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    mask = os.umask(0o022)            # mkdtemp makes the folder 0700; give it what mkdir would have
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    try:
        vq = tmp / names["rvq"]
        _write(vq / "opt.txt", opt_text(rvq_opt).encode())
        _write(vq / "model" / "net_best_fid.tar", _tar_bytes({"vq_model": states["rvq"], "ep": int(steps["rvq"])}))
        _write(vq / "meta" / "mean.npy", _npy_bytes(mean))
        _write(vq / "meta" / "std.npy", _npy_bytes(std))
        for role, key, stem, c in (("masked", "t2m_transformer", "latest", m),
                                   ("residual", "res_transformer", "net_best_fid", s)):
            d = tmp / names[role]
            _write(d / "opt.txt", opt_text(transformer_opt(c, role == "residual")).encode())
            _write(d / "model" / f"{stem}.tar", _tar_bytes({key: states[role], "ep": int(steps[role])}))
        if "length" in states:
            _write(tmp / "length_estimator" / "model" / "finest.tar",
                   _tar_bytes({"estimator": states["length"], "epoch": int(steps.get("length", 0))}))
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["write_momask_folder", "folder_names", "opt_text", "CLIP_TEXT_ENCODER"]
