"""Text-to-motion model folders: the shipped demo model, and what a folder must hold before anything in
it is read (safetensors weights and a JSON config; pickle containers are refused, never unpickled,
because unpickling runs whatever code the file names). Cheap to import: no torch here."""
from __future__ import annotations

from pathlib import Path

from ...common.errors import InputError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BUILTIN_NAME = "motionrag-t2m-small"
BUILTIN_FOLDER = Path(__file__).resolve().parent / "weights" / BUILTIN_NAME
# torch.save files (zip or legacy pickle) and other pickle containers
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")
TRAIN_COMMAND = "python -m training t2m"


def looks_pickled(path: Path) -> bool:
    """True for torch.save output (a zip archive) or a raw pickle stream, whatever the file is called.
    A safetensors file starts with an 8-byte header length followed by its JSON header ('{')."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or (len(head) == 9 and head[8:9] != b"{")


def check_model_folder(folder: Path, *, builtin: bool = False, what: str = "model") -> None:
    """Refuse, before anything is loaded, folders that are not safetensors + JSON model folders."""
    folder = Path(folder)
    weights = folder / MODEL_FILE
    if builtin and not weights.is_file():
        raise InputError(what, f"the built-in model's weights are missing from {folder}; reinstall the pack, or "
                               "choose a model folder under models/motionrag/t2m")
    if not weights.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise InputError(what, f"{folder} holds a pickle-format checkpoint ({', '.join(pickles)}), which is "
                                   f"refused because loading pickle can run arbitrary code; expected {MODEL_FILE} + "
                                   f"{CONFIG_FILE} as written by `{TRAIN_COMMAND}`")
        raise InputError(what, f"{folder} has no {MODEL_FILE}; expected {MODEL_FILE} + {CONFIG_FILE} as written "
                               f"by `{TRAIN_COMMAND}`")
    if looks_pickled(weights):
        raise InputError(what, f"{weights} is a pickle-format checkpoint renamed to .safetensors, which is refused "
                               "because loading pickle can run arbitrary code; convert it to real safetensors")
    if not (folder / CONFIG_FILE).is_file():
        raise InputError(what, f"{folder} has no {CONFIG_FILE}; the weights cannot be used without the "
                               "configuration they were trained with")
