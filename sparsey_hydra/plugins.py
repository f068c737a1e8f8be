"""The one plugin manager: built-ins first (through the same hooks), then entry points."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
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
            caller = getattr(pm.hook, hook)
            for impl in caller.get_hookimpls():
                source = _source_of(pm, impl.plugin)
                for comp in impl.function() or []:
                    self._add(kind, Component(comp.name, comp.factory, comp.params,
                                              comp.description, source))
        self.config_dirs: list[str] = [d for ds in pm.hook.sparsey_config_dirs() for d in ds]

    def _add(self, kind: str, comp: Component) -> None:
        known = self.components[kind]
        if comp.name in known:
            raise SparseyConfigError(
                f"{kind} '{comp.name}' is registered twice: by '{known[comp.name].source}' and "
                f"by '{comp.source}'; uninstall one of them or rename the {kind}."
            )
        known[comp.name] = comp

    def get(self, kind: str, name: str, key: str = "name") -> Component:
        """Look a component up by name, or fail listing the known names and plugins."""
        known = self.components[kind]
        if name not in known:
            plugins = sorted({c.source for cs in self.components.values() for c in cs.values()})
            raise SparseyConfigError(
                f"{key}: unknown {kind} '{name}'; known {kind}s: {', '.join(sorted(known))} "
                f"(plugins loaded: {', '.join(plugins)})"
            )
        return known[name]

    def build_params(self, kind: str, name: str, values: dict[str, Any], key: str) -> BaseModel:
        """Validate `values` with the component's parameter model; one-line error on failure."""
        comp = self.get(kind, name, key=f"{key}.name")
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


def _load_entry_points(pm: pluggy.PluginManager) -> dict[str, str]:
    """Register each entry point under 'package version' so messages say where it came from."""
    failed: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"{ep.dist.metadata['name']} {ep.dist.version}" if ep.dist else ep.name
        if pm.has_plugin(label):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin is reported, not fatal to the others
            failed[label] = f"{type(exc).__name__}: {exc}"
            continue
        pm.register(plugin, name=label)
    return failed


_REGISTRY: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """The process-wide registry: built-ins, then the `sparsey_hydra` entry points."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        from sparsey_hydra import builtins

        pm = pluggy.PluginManager("sparsey_hydra")
        pm.add_hookspecs(hookspecs)
        pm.register(builtins, name="sparsey_hydra (built-in)")
        failed = _load_entry_points(pm)
        _REGISTRY = Registry(pm, failed)
        if failed:
            name, err = next(iter(failed.items()))
            raise SparseyConfigError(f"plugin '{name}' failed to import: {err}")
    return _REGISTRY
