"""Built-in components, registered through the very same hooks as third-party plugins."""

from sparsey_hydra.hookspecs import hookimpl


@hookimpl
def sparsey_register_layers():
    """The canonical Sparsey layer."""
    from sparsey_hydra.core.sparsey_layer import SparseyLayer, SparseyLayerParams
    from sparsey_hydra.plugins import Component

    return [Component("sparsey", SparseyLayer, SparseyLayerParams,
                      "Canonical Sparsey layer: MACs of Q CMs × K cells, CSA, Hebbian learning")]


@hookimpl
def sparsey_register_metrics():
    """The metrics shipped with sparsey-hydra."""
    from sparsey_hydra.metrics import BUILTIN_METRICS

    return BUILTIN_METRICS


@hookimpl
def sparsey_register_transforms():
    """Preprocessing transforms: resize, binarize, skeletonize."""
    from sparsey_hydra.data.transforms import BUILTIN_TRANSFORMS

    return BUILTIN_TRANSFORMS


@hookimpl
def sparsey_register_datasets():
    """Dataset types: digits (embedded), image_folder, sparsey_raw."""
    from sparsey_hydra.data import BUILTIN_DATASETS

    return BUILTIN_DATASETS


@hookimpl
def sparsey_register_stores():
    """Result stores: sqlite (embedded default), postgresql, firestore."""
    from sparsey_hydra.stores import BUILTIN_STORES

    return BUILTIN_STORES


@hookimpl
def sparsey_config_dirs():
    """The package's own configs are the primary config dir, not an extra one."""
    return []
