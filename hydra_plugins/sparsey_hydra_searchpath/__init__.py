"""Hydra search-path plugin: config dirs from sparsey plugins join the `sparsey` app's path.

Hydra discovers this through the `hydra_plugins` namespace package, so configs shipped by a
pip-installed sparsey plugin (`network=example_net`, …) are composable in every Hydra entry
point of sparsey-hydra — the CLI, multirun sweeps and HPO sweepers alike.
"""

from __future__ import annotations

import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SparseyHydraSearchPathPlugin(SearchPathPlugin):
    """Appends each `sparsey_config_dirs` directory after sparsey-hydra's own configs."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not _is_sparsey_app(search_path):
            return  # another Hydra app in the same environment: leave it alone
        from sparsey_hydra.errors import SparseyConfigError
        from sparsey_hydra.plugins import plugin_config_dirs, plugin_manager

        try:
            dirs = plugin_config_dirs(plugin_manager()[0])
        except SparseyConfigError:
            return  # the registry reports it as a one-line error before anything runs
        for source, path in dirs:
            search_path.append(provider=f"sparsey-plugin {source}", path=f"file://{path}")


def _is_sparsey_app(search_path: ConfigSearchPath) -> bool:
    """Whether the primary config dir is sparsey-hydra's (installed or source checkout)."""
    from sparsey_hydra.cli import config_dir

    ours = os.path.realpath(config_dir())
    for element in search_path.get_path():
        path = element.path or ""
        if element.provider == "main" and os.path.realpath(path.removeprefix("file://")) == ours:
            return True
    return False
