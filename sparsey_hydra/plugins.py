"""The one plugin manager: built-ins first (through the same hooks), then entry points.

Every process builds its registry the same way — the `sparsey` command, each Hydra multirun
job and each HPO trial (also in launcher subprocesses) — so an installed plugin is visible
everywhere without any configuration: installing the package is the whole set-up.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from sparsey_hydra import hookspecs
from sparsey_hydra.errors import SparseyConfigError

KINDS = ("layer", "metric", "transform", "dataset", "store")
_HOOKS = {
    "layer": "sparsey_register_layers",
    "metric": "sparsey_register_metrics",
    "transform": "sparsey_register_transforms",
    "dataset": "sparsey_register_datasets",
    "store": "sparsey_register_stores",
}
#: The config key that selects a component of each kind (`network.layers.0.name`, `dataset.type`).
SELECTOR = {"dataset": "type"}
ENTRY_POINT_GROUP = "sparsey_hydra"


@dataclass(frozen=True)
class Component:
    """A named, registered building block with its pydantic parameter model."""

    name: str
    factory: Callable[..., Any]
    params: type[BaseModel]
    description: str = ""
    source: str = field(default="", compare=False)


class Registry:
    """Components by kind and name, collected from every registered plugin."""

    def __init__(self, pm: pluggy.PluginManager, failed: dict[str, str]) -> None:
        self.pm = pm
        self.failed_plugins = failed
        self.components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        for kind, hook in _HOOKS.items():
            for impl in getattr(pm.hook, hook).get_hookimpls():
                source = _source_of(pm, impl.plugin)
                for comp in _hook_result(impl, source):
                    self._add(kind, _checked(comp, kind, hook, source))
        self.config_dirs: list[str] = [d for _, d in plugin_config_dirs(pm)]

    def _add(self, kind: str, comp: Component) -> None:
        known = self.components[kind]
        if comp.name in known:
            raise SparseyConfigError(
                f"{kind} '{comp.name}' is registered twice: by '{known[comp.name].source}' and "
                f"by '{comp.source}'; uninstall one of them or rename the {kind}."
            )
        known[comp.name] = comp

    def plugin_names(self) -> list[str]:
        """Every registered plugin (built-ins included), in registration order."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def get(self, kind: str, name: str, key: str = "name") -> Component:
        """Look a component up by name, or fail listing the known names and plugins."""
        known = self.components[kind]
        if name not in known:
            raise SparseyConfigError(
                f"{key}: unknown {kind} '{name}'; known {kind}s: {', '.join(sorted(known))} "
                f"(plugins loaded: {', '.join(self.plugin_names())}); a {kind} from a plugin "
                f"needs that package installed (see `sparsey-plugins`)"
            )
        return known[name]

    def build_params(self, kind: str, name: str, values: dict[str, Any], key: str) -> BaseModel:
        """Validate `values` with the component's parameter model; one-line error on failure."""
        comp = self.get(kind, name, key=f"{key}.{SELECTOR.get(kind, 'name')}")
        try:
            return comp.params(**values)
        except ValidationError as exc:
            raise SparseyConfigError(format_validation_error(exc, key)) from None


def format_validation_error(exc: ValidationError, prefix: str) -> str:
    """First pydantic error as `prefix.loc: message (got value)`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    where = ".".join(p for p in (prefix, loc) if p)
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{where}: {msg}{shown}"


def _source_of(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def _hook_result(impl: Any, source: str) -> list[Any]:
    """Call one plugin's hook; a plugin that crashes here is named, not a bare traceback."""
    try:
        result = impl.function()
    except Exception as exc:
        raise SparseyConfigError(
            f"plugin '{source}': {impl.function.__name__} raised {type(exc).__name__}: {exc}"
        ) from exc
    if result is None:
        return []
    if isinstance(result, str | bytes) or not isinstance(result, Sequence | set | tuple):
        raise SparseyConfigError(
            f"plugin '{source}': {impl.function.__name__} returned {type(result).__name__}; "
            "it must return a list"
        )
    return list(result)


def _checked(comp: Any, kind: str, hook: str, source: str) -> Component:
    """A plugin's mistake (wrong object, no parameter model) is reported with its name."""
    if not isinstance(comp, Component):
        raise SparseyConfigError(
            f"plugin '{source}': {hook} returned {comp!r}; return a list of "
            "sparsey_hydra.plugins.Component"
        )
    if not (isinstance(comp.params, type) and issubclass(comp.params, BaseModel)):
        raise SparseyConfigError(
            f"plugin '{source}': {kind} '{comp.name}' needs a pydantic BaseModel subclass as "
            f"its params (got {comp.params!r})"
        )
    return Component(comp.name, comp.factory, comp.params, comp.description, source)


def builtin_label() -> str:
    """How built-ins are named in messages and listings: the package and its version."""
    try:
        return f"sparsey-hydra {importlib.metadata.version('sparsey-hydra')} (built-in)"
    except importlib.metadata.PackageNotFoundError:
        return "sparsey-hydra (built-in)"


def _load_entry_points(pm: pluggy.PluginManager) -> dict[str, str]:
    """Register each entry point under 'package version' so messages say where it came from."""
    failed: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.name
        if pm.has_plugin(label):  # a second entry point of the same distribution
            label = f"{label} ({ep.name})"
        try:
            plugin = ep.load()
            if not pm.is_registered(plugin):
                pm.register(plugin, name=label)
        except Exception as exc:  # a broken plugin is recorded; get_registry reports it
            failed[label] = f"{type(exc).__name__}: {exc}"
    return failed


def make_plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str]]:
    """A fresh manager: the hookspecs, the built-ins, then every installed entry point."""
    from sparsey_hydra import builtins

    pm = pluggy.PluginManager("sparsey_hydra")
    pm.add_hookspecs(hookspecs)
    pm.register(builtins, name=builtin_label())
    failed = _load_entry_points(pm)
    return pm, failed


_PM: tuple[pluggy.PluginManager, dict[str, str]] | None = None
_REGISTRY: Registry | None = None


def plugin_manager(refresh: bool = False) -> tuple[pluggy.PluginManager, dict[str, str]]:
    """The process-wide plugin manager and the plugins that failed to load (never raises)."""
    global _PM
    if _PM is None or refresh:
        _PM = make_plugin_manager()
    return _PM


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry; a broken or clashing plugin is a one-line error."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        pm, failed = plugin_manager(refresh)
        if failed:
            name, err = next(iter(failed.items()))
            raise SparseyConfigError(
                f"plugin '{name}' failed to import: {err}; fix it or uninstall it "
                f"(pip uninstall {name.split()[0]})"
            )
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise SparseyConfigError(
                f"plugin '{_source_of(pm, exc.plugin)}': {exc}; the hooks are "
                f"{', '.join(sorted(_HOOKS.values()))}, sparsey_config_dirs"
            ) from None
        _REGISTRY = Registry(pm, failed)
    return _REGISTRY


# -- config directories -------------------------------------------------------------------


def plugin_config_dirs(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """(plugin, absolute directory) for every directory a `sparsey_config_dirs` hook returns."""
    dirs: list[tuple[str, str]] = []
    for impl in pm.hook.sparsey_config_dirs.get_hookimpls():  # registration order
        source = _source_of(pm, impl.plugin)
        for d in _hook_result(impl, source):
            path = Path(d).resolve()
            if not path.is_dir():
                raise SparseyConfigError(
                    f"plugin '{source}': sparsey_config_dirs returned '{d}', which is not a "
                    "directory; ship the configs as package data"
                )
            dirs.append((source, str(path)))
    return dirs


def config_options(primary_dir: str, extra_dirs: Sequence[str]) -> dict[str, set[str]]:
    """Every config group (`network`, `hpo/sampler`, …) and its options over all dirs."""
    options: dict[str, set[str]] = {}
    for root in (primary_dir, *extra_dirs):
        base = Path(root)
        for f in base.rglob("*.yaml"):
            group = f.parent.relative_to(base).as_posix()
            if group != ".":
                options.setdefault(group, set()).add(f.stem)
        for d in base.rglob("*"):
            if d.is_dir():
                options.setdefault(d.relative_to(base).as_posix(), set())
    return options


def check_group_overrides(overrides: Sequence[str], primary_dir: str) -> None:
    """An unknown config option (`network=nope`) as one line naming the group and options.

    Hydra's own message for this is several lines and exit code 1; this one matches every
    other configuration error (exit code 2) and says which plugins contributed options.
    Whenever the search path is not fully known here, the check defers to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # a syntax error: Hydra's own message is the better one
    if any(o.key_or_group.startswith("hydra.searchpath") for o in parsed) or _declares_searchpath(
            primary_dir):
        return
    try:
        pm, _ = plugin_manager()
        extra = plugin_config_dirs(pm)
    except SparseyConfigError:
        return  # reported, in one line, when the registry is built
    options = config_options(primary_dir, [d for _, d in extra])
    for o in parsed:
        group = o.key_or_group
        if group == "hydra" or group.startswith("hydra/") or group not in options:
            continue
        if o.is_delete() or o.package:
            continue
        value = o.value()
        for v in value.list if isinstance(value, ChoiceSweep) else [value]:
            if isinstance(v, str) and v not in options[group]:
                sources = sorted({s for s, _ in extra}) or ["none"]
                raise SparseyConfigError(
                    f"{group}: unknown option '{v}'; known: "
                    f"{', '.join(sorted(options[group])) or '(none)'} (config dirs from plugins: "
                    f"{', '.join(sources)}); an option from a plugin needs that package installed"
                )


def _declares_searchpath(primary_dir: str) -> bool:
    """Whether the primary config adds its own search path (then only Hydra knows it all)."""
    from omegaconf import OmegaConf

    primary = Path(primary_dir) / "config.yaml"
    if not primary.is_file():
        return True
    hydra_node = OmegaConf.load(primary).get("hydra") or {}
    return bool(hydra_node.get("searchpath"))


def exit_on_unknown_options(argv: Sequence[str], primary_dir: str) -> None:
    """The CLI's pre-flight check: print `error: …` and exit 2 on an unknown config option."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(list(argv))
    if args.config_dir or args.config_path or args.config_name:
        return  # another primary config or an extra dir: leave the check to Hydra
    try:
        check_group_overrides(args.overrides or [], primary_dir)
    except SparseyConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
