"""Motion-Adapter weights as one torch module, so that a model manager can move them between devices."""
from __future__ import annotations


class AdapterWeights:
    """Motion-Adapter tensors kept as buffers of one module (`bag`), with the adapter's config and the
    loader's notes. state() gives them back by their Motion-Adapter key, wherever they are now."""

    def __init__(self, state: dict, config, notes: list[str]):
        import torch

        self.bag = torch.nn.Module()
        self.names = list(state)
        for i, name in enumerate(self.names):
            self.bag.register_buffer(f"t{i}", state[name])
        self.config = config
        self.notes = notes

    def state(self) -> dict:
        return {name: getattr(self.bag, f"t{i}") for i, name in enumerate(self.names)}
