"""Config → model: resolve each layer by name in the registry, validate it, build the stack."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel

from sparsey_hydra.core.model import SparseyModel, read_model_file
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Registry


def selected_layers(network: dict[str, Any]) -> list[dict[str, Any]]:
    """The network's layers, cut to `num_layers` when that is set."""
    layers = list(network.get("layers") or [])
    n = network.get("num_layers")
    if n is not None:
        if not isinstance(n, int) or not 1 <= n <= len(layers):
            raise SparseyConfigError(
                f"network.num_layers: must be an integer in 1..{len(layers)} "
                f"(the network defines {len(layers)} layers), got {n!r}")
        layers = layers[:n]
    if not layers:
        raise SparseyConfigError("network.layers: a network needs at least one layer")
    return layers


def validate_layers(network: dict[str, Any], registry: Registry) -> list[BaseModel]:
    """Each layer's parameters validated by its own component's pydantic model."""
    params = []
    for i, layer in enumerate(selected_layers(network)):
        if not isinstance(layer, dict) or "name" not in layer:
            raise SparseyConfigError(
                f"network.layers.{i}: expected a mapping with a 'name' key (e.g. name: sparsey)")
        params.append(registry.build_params("layer", layer["name"], dict(layer),
                                            key=f"network.layers.{i}"))
    return params


def build_model(network: dict[str, Any], input_shape: tuple[int, int], seed: int,
                device: torch.device | str, registry: Registry) -> SparseyModel:
    """Instantiate the network over an input grid of `input_shape` (H, W)."""
    params = validate_layers(network, registry)
    factories = []
    for i, p in enumerate(params):
        comp = registry.get("layer", p.name, key=f"network.layers.{i}.name")

        def make(lower, comp=comp, p=p, i=i):
            try:
                return comp.factory(p, lower, device)
            except ValueError as exc:
                raise SparseyConfigError(f"network.layers.{i}: {exc}") from None

        factories.append(make)
    return SparseyModel(input_shape, factories, seed=seed, device=device)


def load_model(path: str, registry: Registry, device: torch.device | str = "cpu"
               ) -> tuple[SparseyModel, dict[str, Any]]:
    """Rebuild a saved model from the config stored in its file, then load its state."""
    payload = read_model_file(path)
    config = payload["config"]
    state = payload["state"]
    model = build_model(config["network"], tuple(state["input_shape"]), int(state["seed"]),
                        device, registry)
    model.load_state(state)
    return model, config
