"""The extension points of sparsey-hydra: one hook per kind of component.

A plugin is a module (or object) with `@hookimpl` functions of these names, announced by an
entry point in the group `sparsey_hydra`; the built-ins use the very same hooks. Each
register hook returns a list of `sparsey_hydra.plugins.Component`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sparsey_hydra.plugins import Component

hookspec = pluggy.HookspecMarker("sparsey_hydra")
hookimpl = pluggy.HookimplMarker("sparsey_hydra")


@hookspec
def sparsey_register_layers() -> list[Component]:
    """Layers: factory(params, lower: LayerGeometry, device) → an object like SparseyLayer."""


@hookspec
def sparsey_register_metrics() -> list[Component]:
    """Metrics: factory(params) → a `metrics.base.Metric` (B×M tensor per layer per step)."""


@hookspec
def sparsey_register_transforms() -> list[Component]:
    """Preprocessing transforms: factory(params) → callable(H×W image) → H×W image."""


@hookspec
def sparsey_register_datasets() -> list[Component]:
    """Dataset types: factory(params) → `data.image_set.ImageSet`, selected by `dataset.type`."""


@hookspec
def sparsey_register_stores() -> list[Component]:
    """Result stores: factory(params) → a `stores.base.Store`, by `system.stores.<key>.name`."""


@hookspec
def sparsey_config_dirs() -> list[str]:
    """Directories of Hydra config groups (`network/`, `trainer/`, …) to add to the search path."""
