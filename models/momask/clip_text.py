"""MoMask's text encoder: the CLIP ViT-B/32 text tower, from a Hugging Face folder.

MoMask conditions every network on `clip_model.encode_text(clip.tokenize(texts, truncate=True)).float()`
from OpenAI's package: the final-LayerNorm state at the end-of-text token times the text projection,
not L2-normalised. `openai/clip-vit-base-patch32` in the Hugging Face format is the same network with
the same weights; its CLIPTextModelWithProjection's `text_embeds` is that vector (the pooled
state is taken at the end-of-text token, attention is causal, so padding does not change it). Texts
longer than 77 tokens are truncated, keeping the end-of-text token, as OpenAI's `truncate=True` does.

Only the text tower is loaded: the folder may hold the whole CLIPModel (as the hub repository does),
whose vision weights are skipped. Weights are read from model.safetensors when present.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ...common.errors import InputError

HF_REPO = "openai/clip-vit-base-patch32"
MAX_TOKENS = 77
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
         "special_tokens_map.json")
INPUT = "clip_folder"


def download_command(folder: str | os.PathLike) -> str:
    # the files as positional names: huggingface-cli's --include keeps only its last value when repeated
    # (argparse), and positional names work the same with `hf download` (huggingface_hub 1.0 and later)
    return f'huggingface-cli download {HF_REPO} {" ".join(FILES)} --local-dir "{Path(folder)}"'


class ClipTextEncoder:
    """texts -> (B, 512) float32 CLIP text features, as MoMask's encode_text gives them."""

    def __init__(self, tokenizer, model, folder: str = ""):
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.folder = folder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    @torch.no_grad()
    def encode(self, texts: Sequence[str] | str) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError("text", f"expected one or more strings, got {texts!r:.80}")
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        out = self.model(input_ids=batch["input_ids"].to(self.device),
                         attention_mask=batch["attention_mask"].to(self.device))
        return out.text_embeds.float()


def _missing(folder: Path, what: str, reason: str = "") -> InputError:
    return InputError(INPUT, f"{what} in {folder}; MoMask's text encoder is CLIP ViT-B/32 ({HF_REPO}) in the Hugging "
                             f"Face format. Download it with: {download_command(folder)}"
                             + (f" ({reason})" if reason else ""))


def _download(folder: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(HF_REPO, allow_patterns=list(FILES), local_dir=str(folder))


def load_clip_text(folder: str | os.PathLike, device: str | torch.device = "cpu", download: bool = False,
                   dtype: torch.dtype = torch.float32) -> ClipTextEncoder:
    """The CLIP text tower in `folder` (a CLIPModel or CLIPTextModelWithProjection saved by
    transformers). With download=True a missing folder is fetched from the hub first; offline, the
    error gives the command to run."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and download:
        try:
            _download(folder)
        except Exception as exc:             # no network, no hub client: all end in the message below
            raise _missing(folder, "no config.json", f"the download failed: {type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not (folder / "config.json").is_file():
        raise _missing(folder, "no config.json", "" if download else "downloading is off")
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModelWithProjection

    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(INPUT, f"{folder / 'config.json'}: not readable JSON ({exc})") from None
    kind = raw.get("model_type")
    if kind == "clip":                       # the whole CLIPModel: its text part and the shared projection size
        text = dict(raw.get("text_config") or {})
        text["projection_dim"] = raw.get("projection_dim", text.get("projection_dim", 512))
        config = CLIPTextConfig(**{k: v for k, v in text.items() if k not in ("model_type", "transformers_version")})
    elif kind == "clip_text_model":
        config = CLIPTextConfig.from_pretrained(str(folder), local_files_only=True)
    else:
        raise InputError(INPUT, f"{folder}: holds a {kind!r} model; expected CLIP ViT-B/32 ({HF_REPO}), model_type "
                                f"'clip' or 'clip_text_model'")
    if not any((folder / f).is_file() for f in ("model.safetensors", "pytorch_model.bin")):
        raise _missing(folder, "no model.safetensors")
    try:
        model, info = CLIPTextModelWithProjection.from_pretrained(str(folder), config=config, local_files_only=True,
                                                                  dtype=dtype, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise _missing(folder, "an incomplete CLIP folder", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise InputError(INPUT, f"{folder}: the weights lack {len(missing)} key(s) of the CLIP text tower "
                                f"({', '.join(missing[:4])}); expected {HF_REPO}")
    return ClipTextEncoder(tokenizer, model.to(device), str(folder))


__all__ = ["ClipTextEncoder", "load_clip_text", "download_command", "HF_REPO"]
