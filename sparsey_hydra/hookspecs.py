"""The extension points of sparsey-hydra: one hook per kind of component."""

import pluggy

hookspec = pluggy.HookspecMarker("sparsey_hydra")
hookimpl = pluggy.HookimplMarker("sparsey_hydra")


@hookspec
def sparsey_register_layers():
    """Return a list of `Component`s that build network layers."""


@hookspec
def sparsey_register_metrics():
    """Return a list of `Component`s that build metrics."""


@hookspec
def sparsey_register_transforms():
    """Return a list of `Component`s that build preprocessing transforms."""


@hookspec
def sparsey_register_datasets():
    """Return a list of `Component`s that load datasets."""


@hookspec
def sparsey_register_stores():
    """Return a list of `Component`s that build result stores."""


@hookspec
def sparsey_config_dirs():
    """Return a list of directories to add to Hydra's config search path."""
