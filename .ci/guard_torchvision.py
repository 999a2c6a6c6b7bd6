"""Wrap the start-up torchvision imports of a test ComfyUI copy in try/except ImportError.

Used by .ci/setup on the copies it unpacks into .cache (never on someone's checkout). No CPU
torchvision exists on these machines, and ComfyUI imports it at start-up only for models the tests
never run (Stable Cascade, LaMa, ACE audio, Cosmos). Guarding the imports is better than a fake
torchvision package on PYTHONPATH: with one, transformers believes torchvision is installed and its
image processors (CLIPImageProcessor, used by diffusers' SVD pipeline) fail to import.

usage: guard_torchvision.py COMFYUI_FOLDER {2024|new}
"""
import sys
from pathlib import Path

NOTE = "  # guarded by MotionRAG's .ci/setup"


def _guard(statement: str, names: str) -> tuple[str, str]:
    return (f"{statement}\n",
            f"try:\n    {statement}\nexcept ImportError:{NOTE}\n    {names} = None\n")


GUARDS = {
    "2024": {
        "comfy/ldm/cascade/stage_c_coder.py": _guard("import torchvision", "torchvision"),
        "comfy/ldm/cascade/controlnet.py": _guard("import torchvision", "torchvision"),
        "comfy_extras/chainner_models/architecture/LaMa.py": _guard(
            "from torchvision.transforms.functional import InterpolationMode, rotate",
            "InterpolationMode = rotate"),
    },
    # ComfyUI v0.3.64 (October 2025)
    "new": {
        "comfy/ldm/cascade/stage_c_coder.py": _guard("import torchvision", "torchvision"),
        "comfy/ldm/cascade/controlnet.py": _guard("import torchvision", "torchvision"),
        "comfy/ldm/ace/vae/music_dcae_pipeline.py": _guard("import torchvision.transforms as transforms",
                                                           "transforms"),
        "comfy/ldm/cosmos/model.py": _guard("from torchvision import transforms", "transforms"),
        "comfy/ldm/cosmos/predict2.py": _guard("from torchvision import transforms", "transforms"),
    },
}


def main(root: Path, which: str) -> None:
    for rel, (old, new) in GUARDS[which].items():
        path = root / rel
        text = path.read_text()
        if text.count(old) != 1:
            sys.exit(f"cannot guard the torchvision import in {path}: expected exactly one {old!r}")
        path.write_text(text.replace(old, new))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
