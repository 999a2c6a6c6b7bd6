"""One object per group and key while someone holds it: the pack's one way of sharing loaded models.

A loader asks `shared(group, key, load)`: while the object loaded earlier for the same key is still alive
(someone holds a reference: inside ComfyUI a node output or node object, see nodes/model_owner.py; outside
it, the caller), that object is returned instead of a second copy in memory. Only weak references are kept
here, so this registry never decides how long anything lives: once the holders let go, the memory goes
back. Each group keeps one key: asking for another key forgets the previous one."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

_LOCK = threading.RLock()
_SLOTS: dict[str, tuple[Any, "weakref.ref"]] = {}      # group -> (key, weak reference to the object)


def alive(group: str, key):
    """The live object of `group` for `key`, or None (never loaded, another key, or already freed)."""
    with _LOCK:
        slot = _SLOTS.get(group)
        return slot[1]() if slot is not None and slot[0] == key else None


def shared(group: str, key, load: Callable[[], Any]):
    """The live object of `group` for `key`, else load() remembered weakly as the group's one object.
    Raises TypeError for objects that cannot be weakly referenced (a plain dict)."""
    with _LOCK:
        obj = alive(group, key)
        if obj is not None:
            return obj
        _SLOTS.pop(group, None)
        obj = load()
        try:
            ref = weakref.ref(obj)
        except TypeError:
            raise TypeError(f"{group}: a {type(obj).__name__} cannot be weakly referenced; wrap it in an object") from None
        _SLOTS[group] = (key, ref)
        return obj


def live() -> dict[str, Any]:
    """{group: key} of the objects that are still in memory (someone holds them)."""
    with _LOCK:
        return {g: k for g, (k, ref) in list(_SLOTS.items()) if ref() is not None}


def forget(group: str | None = None) -> None:
    """Forget one group's slot (all: None); frees nothing that someone still holds."""
    with _LOCK:
        if group is None:
            _SLOTS.clear()
        else:
            _SLOTS.pop(group, None)
