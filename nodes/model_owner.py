"""The one owner of every model the pack loads inside ComfyUI: image-to-video backbones, CAMA bundles,
Motion-Adapter weights, text-to-motion generators.

Ownership: a loaded model (the payload) is owned by the Held value that a loader node outputs or that a
node object keeps; ComfyUI's executor cache keeps node outputs and node objects, so ComfyUI owns it. This
module remembers each payload only by weak reference (common/shared.py), so that a second loader of the same
files gets the same object instead of a second copy, and one model per group stays in memory (loading
another backbone lets go of the previous one).

Devices: the torch modules of each payload sit in one comfy.model_patcher.ModelPatcher (load device =
ComfyUI's torch device, offload device = its unet offload device), made once per payload, and nodes call
load_to_device before using a model. So ComfyUI moves our models to the offload device when it needs room
for its own or on "Unload models" (POST /free {"unload_models": true}); on "Free model and node cache"
(POST /free {"free_memory": true}) it drops the executor cache, after which nothing holds our models and
their memory goes back (a weak finalizer logs "MotionRAG: <group> <label> freed").

Without ComfyUI (the library driven from Python, the unit tests) there are no patchers and models stay
on the CPU. ComfyUI is imported lazily: the pack must import without it.
"""
from __future__ import annotations

import gc
import logging
import weakref
from typing import Any, Callable

from ..common.shared import alive, forget, shared
from .comfy_env import model_management

log = logging.getLogger("MotionRAG")
PATCHER_ATTR = "_motionrag_patcher"          # set on the payload, so every Held of one model shares it
_WRAPPER_CLASSES: dict[str, type] = {}


# ------------------------------------------------------------------------------ the link value
def _wrapper(name: str, modules: dict):
    """A ModuleDict of the model's modules, of a class named after it, so ComfyUI's log says
    'Requested to load MotionRAG...' for our models."""
    import torch

    cls = _WRAPPER_CLASSES.get(name)
    if cls is None:
        cls = _WRAPPER_CLASSES[name] = type(name, (torch.nn.ModuleDict,), {})
    return cls(modules)


def _log_when_freed(modules: list, what: str) -> None:
    """Log 'MotionRAG: <what> freed' once every torch module of a model has been garbage-collected:
    only then is nothing (ours or ComfyUI's) holding its memory."""
    left = [len(modules)]

    def gone():
        left[0] -= 1
        if left[0] == 0:
            log.info("MotionRAG: %s freed", what)

    for m in modules:
        weakref.finalize(m, gone).atexit = False          # nothing to report at interpreter exit


class Held:
    """A link value (or a node's slot) for one loaded model. Owns the payload while it holds it; after
    drop() (a newer model of the same group, keep_loaded off) it loads the model again when asked."""

    _live: "weakref.WeakSet[Held]" = weakref.WeakSet()

    def __init__(self, group: str, key: tuple, loader: Callable[[], Any], *, label: str,
                 modules: Callable[[Any], dict], kind: str, base: str = ""):
        self.group, self.key, self.base, self.label, self.kind = group, key, base, label, kind
        self._loader = loader
        self._modules = modules              # payload -> {name: torch module} that ComfyUI moves
        self._payload = None
        self.how = ""
        Held._live.add(self)

    def __repr__(self):
        return f"Held({self.group!r}, {self.label!r}, {'loaded' if self._payload is not None else 'dropped'})"

    def get(self):
        payload = self._payload
        if payload is None:
            payload = alive(self.group, self.key)
            if payload is None:
                drop_group(self.group, keep_key=self.key)        # one model per group in memory
                payload = shared(self.group, self.key, self._load)
                self.how = "loaded from disk"
            else:
                self.how = "reused (already in memory)"
            log.info("MotionRAG: %s %s %s", self.group, self.label, self.how)
            self._payload = payload
        return payload

    def _load(self):
        payload = self._loader()
        _log_when_freed(list(self._modules(payload).values()), f"{self.group} {self.label}")
        return payload

    def patcher(self):
        """ComfyUI's ModelPatcher for this model (one per model), or None without ComfyUI."""
        mm = model_management()
        if mm is None:
            return None
        payload = self.get()
        patcher = getattr(payload, PATCHER_ATTR, None)
        if patcher is None:
            from comfy.model_patcher import ModelPatcher

            patcher = ModelPatcher(_wrapper(self.kind, self._modules(payload)), load_device=mm.get_torch_device(),
                                   offload_device=mm.unet_offload_device())
            setattr(payload, PATCHER_ATTR, patcher)
        return patcher

    def drop(self) -> None:
        self._payload = None


def drop_group(group: str | None, keep_key=None) -> None:
    """Let go of every held model of `group` (all groups: None) except `keep_key`'s, and ask ComfyUI to
    forget those only it still holds."""
    dropped = False
    for h in list(Held._live):
        if (group is None or h.group == group) and h.key != keep_key and h._payload is not None:
            h.drop()
            dropped = True
    if not dropped:
        return
    gc.collect()
    mm = model_management()
    if mm is not None:
        mm.cleanup_models()               # unloads LoadedModels whose patcher nobody else references
    gc.collect()


def release_all() -> None:
    """Free every model that only we (and ComfyUI's manager) hold."""
    drop_group(None)
    forget()
    gc.collect()
    mm = model_management()
    if mm is not None:
        mm.soft_empty_cache()


def load_to_device(*helds: Held):
    """Load the models onto ComfyUI's torch device through its manager (making room by offloading
    other models as it sees fit); returns that device. Without ComfyUI: the CPU."""
    import torch

    mm = model_management()
    if mm is None:
        return torch.device("cpu")
    patchers = [h.patcher() for h in helds]
    mm.load_models_gpu(patchers)
    device = mm.get_torch_device()
    for p in patchers:
        # ComfyUI's low-VRAM path moves only modules with a `weight`; ours also keep bare parameters
        # (latents, start tokens), which must follow
        if any(t.device.type != device.type for t in (*p.model.parameters(), *p.model.buffers())):
            p.model.to(device)
    return device
