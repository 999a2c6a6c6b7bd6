"""Checkpoints: weights and optimizer state as safetensors, configuration as JSON (no pickle).

A model folder holds `model.safetensors` (every parameter and buffer of the tokenizer, the
masked transformer and the residual transformer, keys prefixed `tokenizer.`, `masked.`,
`residual.`) and `config.json` (format tag, model config, training summary). Training adds
`train_state.safetensors` (optimizer moments, keyed `<stage>.state.<param index>.<name>`) and
`train_state.json` (stage, step, optimizer hyper-parameters, run settings).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ...common.errors import InputError
from .. import tensor_file
from .config import FORMAT, FORMAT_VERSION, ConfigError, ModelConfig
from .folders import CONFIG_FILE, MODEL_FILE
from .model import T2MModel

STATE_FILE = "train_state.safetensors"
STATE_JSON = "train_state.json"


class CheckpointError(InputError):
    """A checkpoint that cannot be used; `input` names the file (or folder), the message what is wrong."""


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    _atomic_write_bytes(Path(path), lambda p: save_file(clean, str(p), metadata=metadata))


def load_tensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, sort_keys=True)
    _atomic_write_bytes(Path(path), lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, f"file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, f"expected a JSON object")
    return data


def check_state(module: torch.nn.Module, tensors: dict, source: str) -> None:
    """Raise CheckpointError naming missing keys, unexpected keys and shape/dtype mismatches."""
    want = module.state_dict()
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} {tensors[k].dtype}, model {tuple(want[k].shape)} {want[k].dtype}"
             for k in sorted(set(want) & set(tensors))
             if tensors[k].shape != want[k].shape or tensors[k].dtype != want[k].dtype]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:5])}"
                        f"{' ...' if len(unexpected) > 5 else ''}")
    if wrong:
        problems.append(f"{len(wrong)} shape/dtype mismatch(es): {'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}")
    if problems:
        raise CheckpointError(source, f"does not match the model built from its config.json: " + " | ".join(problems))


def save_model(folder: Path, model: T2MModel, trained: dict | None = None) -> None:
    """model.safetensors + config.json in `folder`; `trained` (default: model.trained) is the training summary."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / MODEL_FILE, model.state_dict(), metadata={"format": FORMAT})
    write_json(folder / CONFIG_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION,
                                      "model": model.config.to_dict(),
                                      "trained": dict(model.trained if trained is None else trained)})


def read_config(folder: Path) -> tuple[ModelConfig, dict]:
    path = Path(folder) / CONFIG_FILE
    data = read_json(path)
    if data.get("format") != FORMAT:
        raise CheckpointError(path, f"format is {data.get('format')!r}, expected {FORMAT!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {data.get('format_version')!r} is not the supported "
                              f"{FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(data.get("model"))
    except ConfigError as exc:
        raise CheckpointError(path, f"{exc}") from None
    return config, data.get("trained", {})


def check_config_against_weights(config: ModelConfig, path: Path) -> None:
    """The sizes that multiply memory (layer counts, widths) as config.json states them, compared with what
    model.safetensors holds, from its header alone; refuses naming the field. The rest (codebook size...)
    is bounded by the config's limits and compared key by key once the model is built (check_state)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    h = tensor_file.read_header(path, str(path), error=CheckpointError)
    t, m, r = config.tokenizer, config.transformer, config.refiner
    expected = [
        ("transformer.layers", m.layers, tensor_file.layer_count(h, "masked.blocks.")),
        ("transformer.residual_layers", m.residual_layers, tensor_file.layer_count(h, "residual.blocks.")),
        ("transformer.retrieval_layers", m.retrieval_layers, tensor_file.layer_count(h, "masked.retr_encoder.")),
        ("transformer.latent", m.latent, tensor_file.dim(h, "masked.norm.weight", 0)),
        ("transformer.ff", m.ff, tensor_file.dim(h, "masked.blocks.0.ff.net.0.weight", 0)),
        ("transformer.text_dim", m.text_dim, tensor_file.dim(h, "masked.text_proj.weight", 1)),
        ("tokenizer.width", t.width, tensor_file.dim(h, "tokenizer.encoder.net.0.weight", 0)),
        ("refiner.width", r.width, tensor_file.dim(h, "refiner.base_in.weight", 0) or 0),
    ]
    if r.width:
        expected.append(("refiner.depth", r.depth, tensor_file.layer_count(h, "refiner.base_net.")))
    config_path = path.parent / CONFIG_FILE
    tensor_file.check_against_file(expected, path.name,
                                   error=lambda field, message: CheckpointError(
                                       config_path, f"{field}: {message}; the weights file does not match the "
                                       "model built from its config.json"))


def load_model(folder: Path, device: str = "cpu") -> T2MModel:
    """The model in `folder` (model.safetensors + config.json), in eval mode on `device`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(folder, f"not a folder; expected a text-to-motion model folder with "
                              f"{MODEL_FILE} and {CONFIG_FILE}")
    config, trained = read_config(folder)
    check_config_against_weights(config, folder / MODEL_FILE)      # before any module is built
    model = T2MModel(config)
    tensors = load_tensors(folder / MODEL_FILE)
    check_state(model, tensors, str(folder / MODEL_FILE))
    tensor_file.check_finite(tensors, str(folder / MODEL_FILE), error=CheckpointError)
    model.load_state_dict(tensors)
    model.trained = dict(trained)
    return model.to(device).eval()


def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """(tensors, JSON-able hyper-parameters) of an optimizer's state."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"{prefix}.state.{idx}.{name}"] = value
    groups = json.loads(json.dumps(sd["param_groups"], default=lambda o: list(o) if isinstance(o, tuple) else None))
    return tensors, {"param_groups": groups}


def optimizer_from_tensors(opt: torch.optim.Optimizer, prefix: str, tensors: dict, meta: dict, source: str) -> None:
    groups = meta.get("param_groups")
    current = opt.state_dict()["param_groups"]
    if not isinstance(groups, list) or [len(g.get("params", [])) for g in groups] != [len(g["params"]) for g in current]:
        raise CheckpointError(source, f"optimizer state for {prefix!r} does not match the model's parameters")
    state: dict = {}
    head = f"{prefix}.state."
    for key, value in tensors.items():
        if key.startswith(head):
            idx, name = key[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})
