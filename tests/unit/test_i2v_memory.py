"""Who keeps the image-to-video models in memory: the model owner only remembers them weakly, the
nodes' Held link values own them, and dropping the owners frees them (no ComfyUI here; the real
ComfyUI path is tests/integration/test_i2v_graph.py)."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch

from motionrag_suite.common import shared
from motionrag_suite.nodes import model_owner as cm


class Model:
    def __init__(self, n=4):
        self.net = torch.nn.Linear(n, n)


@pytest.fixture(autouse=True)
def clean():
    cm.release_all()
    yield
    cm.release_all()


def test_the_owner_remembers_models_by_weak_reference_only():
    loads = []

    def load():
        loads.append(1)
        return Model()

    obj = shared.shared("backbone", ("a",), load)
    assert shared.shared("backbone", ("a",), load) is obj and len(loads) == 1       # reused while alive
    assert shared.live() == {"backbone": ("a",)}
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None and shared.live() == {}
    shared.shared("backbone", ("a",), load)
    assert len(loads) == 2                                                     # loaded again once freed
    with pytest.raises(TypeError, match="weakly referenced"):
        shared.shared("adapter", ("b",), lambda: {"a dict": 1})


def _held(key, loads, group="backbone"):
    def loader():
        loads.append(key)
        return Model()

    return cm.Held(group, key, loader, base="CogVideoX", label=str(key), modules=lambda m: {"net": m.net},
                   kind="MotionRAGTest")


def test_held_values_own_the_model_share_it_and_free_it(caplog):
    loads = []
    a, b = _held(("x",), loads), _held(("x",), loads)
    with caplog.at_level("INFO", logger="MotionRAG"):
        model = a.get()
        assert b.get() is model and loads == [("x",)]
        assert a.how == "loaded from disk" and b.how == "reused (already in memory)"
        ref = weakref.ref(model)
        del model
        a.drop()
        gc.collect()
        assert ref() is not None, "b still owns it"
        b.drop()
        gc.collect()
        assert ref() is None and shared.live() == {}
    assert "MotionRAG: backbone ('x',) freed" in caplog.text


def test_a_new_model_in_a_group_lets_go_of_the_previous_one():
    loads = []
    first = _held(("x",), loads)
    ref = weakref.ref(first.get())
    other_group = _held(("z",), loads, group="cama")
    keep = weakref.ref(other_group.get())
    second = _held(("y",), loads)
    second.get()
    gc.collect()
    assert ref() is None and "dropped" in repr(first)
    assert keep() is not None, "another group's model must stay"
    assert first.get() is not None and loads == [("x",), ("z",), ("y",), ("x",)]    # loads again on demand
    cm.release_all()
    gc.collect()
    assert keep() is None and shared.live() == {}


def test_without_comfyui_there_is_no_patcher_and_models_stay_on_the_cpu():
    h = _held(("x",), [])
    assert h.patcher() is None
    assert cm.load_to_device(h) == torch.device("cpu")
