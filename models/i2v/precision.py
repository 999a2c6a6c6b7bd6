"""Number formats for image-to-video models: what MotionRAG ran in (bf16) where the hardware does it
natively, fp32 elsewhere."""
from __future__ import annotations

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_bf16() -> bool:
    """Native bf16 matrix maths on this CPU (AVX512-BF16 or AMX); emulated bf16 would be slower than fp32.
    torch exposes the probes only as private functions of torch.cpu, so a missing one counts as no."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(cpu, probe)():
                return True
        except (AttributeError, RuntimeError):
            pass
    return False


def model_dtype(device):
    """bf16 on a GPU that has it (MotionRAG ran in bf16), else fp32: the backbones and encoders."""
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cama_dtype(precision: str, device):
    """CAMA's format for a `precision` input (auto / float32 / bfloat16). auto also takes bf16 on CPUs with
    native bf16, where it is 3-4x faster than fp32."""
    import torch

    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        return torch.bfloat16
    if getattr(device, "type", str(device)) == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return model_dtype(device)
