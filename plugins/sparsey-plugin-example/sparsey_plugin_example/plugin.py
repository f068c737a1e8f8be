"""The entry point: one `@hookimpl` per extension point this plugin contributes to.

Imports of the components stay inside the hooks, so listing plugins stays cheap and a
component's heavy dependencies load only when the registry is built.
"""

from __future__ import annotations

from pathlib import Path

from sparsey_hydra.hookspecs import hookimpl
from sparsey_hydra.plugins import Component


@hookimpl
def sparsey_register_layers() -> list[Component]:
    """A winner-take-all baseline with the Sparsey layer interface."""
    from sparsey_plugin_example.wta_layer import WTALayer, WTALayerParams

    return [Component("example_wta", WTALayer, WTALayerParams,
                      "Winner-take-all baseline: argmax per CM, no familiarity-driven noise")]


@hookimpl
def sparsey_register_metrics() -> list[Component]:
    """Code entropy per MAC."""
    from sparsey_plugin_example.code_entropy import CodeEntropy, CodeEntropyParams

    return [Component("code_entropy", CodeEntropy, CodeEntropyParams,
                      "Entropy (bits) of each MAC's winner usage so far, mean over its CMs")]


@hookimpl
def sparsey_register_transforms() -> list[Component]:
    """Seeded salt-and-pepper noise."""
    from sparsey_plugin_example.salt_and_pepper import SaltAndPepperParams, build

    return [Component("salt_and_pepper", build, SaltAndPepperParams,
                      "Seeded salt-and-pepper noise: a fraction `amount` of pixels set to 0 or 1")]


@hookimpl
def sparsey_register_datasets() -> list[Component]:
    """Synthetic horizontal/vertical bars."""
    from sparsey_plugin_example.bars import BarsParams, load

    return [Component("bars", load, BarsParams,
                      "Synthetic horizontal and vertical bars (Földiák 1990), no files needed")]


@hookimpl
def sparsey_config_dirs() -> list[str]:
    """network=example_net, preprocessing=salt_and_pepper, dataset=bars, trainer=code_entropy."""
    return [str(Path(__file__).resolve().parent / "conf")]
