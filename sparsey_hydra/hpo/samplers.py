"""Strategies by name → seeded Optuna samplers."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.hpo.space import grid_values


def grid_space(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    return {key: grid_values(dist, key) for key, dist in space.items()}


def grid_size(space: dict[str, BaseDistribution]) -> int:
    return math.prod(len(v) for v in grid_space(space).values())


def make_sampler(strategy: str, seed: int | None, space: dict[str, BaseDistribution],
                 kwargs: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """random | grid | tpe (bayesian) | cmaes | nsga2, all seeded.

    The sweep creates the sampler for each trial it claims, seeded with the study seed plus
    the number of trials already in the study (the grid: the study seed, which orders the
    grid), so a resumed or shared study does not replay samples; every sampler here keeps its
    state in the study's storage, so re-creating it loses nothing.
    """
    kwargs = dict(kwargs)
    try:
        if strategy == "random":
            return optuna.samplers.RandomSampler(seed=seed, **kwargs)
        if strategy == "grid":
            return optuna.samplers.GridSampler(grid_space(space), seed=seed, **kwargs)
        if strategy == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **kwargs)
        if strategy == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise SparseyConfigError(
                    "hpo.strategy: cmaes needs the `cmaes` package; pip install cmaes"
                ) from None
            return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)
        if strategy == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **kwargs)
    except TypeError as exc:
        raise SparseyConfigError(
            f"hpo.sampler_kwargs: {exc}; see the Optuna sampler's documentation") from None
    raise SparseyConfigError(f"hpo.strategy: unknown strategy '{strategy}'")
