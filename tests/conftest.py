"""Shared fixtures: the real data in ../shared/data and small core builders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sparsey_hydra.core.model import SparseyModel
from sparsey_hydra.core.sparsey_layer import SparseyLayer, SparseyLayerParams

pytest_plugins = ["services"]  # PostgreSQL and Firestore-emulator fixtures (tests/services.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPARSEY_SHARED_DATA", REPO.parent / "shared" / "data"))

# The reference parameters of spec §6 (no decay, θ_sat = 1).
REFERENCE = dict(
    num_cms_per_mac=10, num_neurons_per_cm=8, sigmoid_chi=100.0, familiarity_exponent=2.0,
    min_familiarity=0.1, sigmoid_lambda=28.0, sigmoid_phi=0.5, mu_floor=1.0, v_hi=0.999,
    saturation_threshold=1.0,
)


def layer_params(**overrides) -> SparseyLayerParams:
    values = {**REFERENCE, "num_macs": 1, "receptive_field_radius": 2.0,
              "activation_threshold_min": 0.0, "activation_threshold_max": 1.0}
    values.update(overrides)
    return SparseyLayerParams(**values)


def build_model(input_shape: tuple[int, int], *params: SparseyLayerParams,
                seed: int = 0) -> SparseyModel:
    return SparseyModel(input_shape, [lambda g, p=p: SparseyLayer(p, g) for p in params],
                        seed=seed)


def random_images(n: int, shape: tuple[int, int], density: float = 0.3,
                  seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=gen) < density).float()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real test data expected at {SHARED_DATA}"
    return SHARED_DATA
