"""Search space: `hpo.params` (and command-line sweeps) → Optuna distributions → overrides.

A dimension is written as a list of choices, a mapping `{type, low, high, step, log}` or
`{choices: [...]}`, or in Hydra's sweep syntax (`choice(4, 9)`, `range(2, 11)`,
`interval(0.1, 0.9)`, `tag(log, interval(1, 40))`) as the Hydra Optuna sweeper reads it.
Every key is a config key, per-layer keys included (`network.layers.0.num_macs`), and
`network.num_layers` searches the depth (a network keeps its first N layers).
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sparsey_hydra.errors import SparseyConfigError

_LAYER_KEY = re.compile(r"^network\.layers\.(\d+)\.([A-Za-z_][A-Za-z0-9_]*)$")
_SCALARS = (str, int, float, bool, type(None))
_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_KEYWORDS = {"true", "false", "null", "inf", "nan"}


def _num(value: Any, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SparseyConfigError(f"{key}.{what}: expected a number, got {value!r}")
    return value


def distribution(spec: Any, key: str) -> BaseDistribution:
    """One dimension from its config spec; errors name `key` and show a working form."""
    if isinstance(spec, list | tuple):
        return _categorical(list(spec), key)
    if isinstance(spec, str):
        return _from_sweep_string(spec, key)
    if not isinstance(spec, dict):
        raise SparseyConfigError(
            f"{key}: expected a list of choices, a mapping like {{type: float, low: 0.1, "
            f"high: 0.9}} or a sweep like interval(0.1, 0.9); got {spec!r}")
    allowed = {"type", "low", "high", "step", "log", "choices"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SparseyConfigError(
            f"{key}.{unknown[0]}: unknown key; a dimension takes {', '.join(sorted(allowed))}")
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind == "categorical":
        if "choices" not in spec:
            raise SparseyConfigError(f"{key}.choices: a categorical dimension needs choices")
        return _categorical(list(spec["choices"]), key)
    if kind not in ("int", "float"):
        raise SparseyConfigError(
            f"{key}.type: use int, float or categorical (or give choices), got {kind!r}")
    if "low" not in spec or "high" not in spec:
        raise SparseyConfigError(f"{key}: an {kind} range needs low and high")
    low, high = _num(spec["low"], key, "low"), _num(spec["high"], key, "high")
    step, log = spec.get("step"), bool(spec.get("log", False))
    if step is not None:
        step = _num(step, key, "step")
    if low > high:
        raise SparseyConfigError(f"{key}: low ({low}) must be <= high ({high})")
    if log and (low <= 0 or step is not None):
        raise SparseyConfigError(f"{key}.log: a log range needs low > 0 and no step")
    try:
        if kind == "int":
            if any(v != int(v) for v in (low, high)):
                raise SparseyConfigError(f"{key}: an int range needs integer low and high")
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(float(low), float(high), log=log,
                                 step=None if step is None else float(step))
    except ValueError as exc:
        raise SparseyConfigError(f"{key}: {exc}") from None


def _categorical(choices: list[Any], key: str) -> CategoricalDistribution:
    if not choices:
        raise SparseyConfigError(f"{key}: the list of choices is empty")
    for c in choices:
        if not isinstance(c, _SCALARS):
            raise SparseyConfigError(
                f"{key}: choices must be numbers, strings, booleans or null, got {c!r}")
    if len({repr(c) for c in choices}) != len(choices):
        raise SparseyConfigError(f"{key}: the choices {choices} repeat a value")
    return CategoricalDistribution(choices)


def _from_sweep_string(spec: str, key: str) -> BaseDistribution:
    """Hydra's sweep grammar, parsed by Hydra itself (as hydra-optuna-sweeper does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_override(f"x={spec}")
    except HydraException as exc:
        raise SparseyConfigError(
            f"{key}: cannot parse '{spec}' ({str(exc).splitlines()[0]}); write e.g. "
            "choice(4, 9), range(2, 11), interval(0.1, 0.9) or tag(log, interval(1, 40))"
        ) from None
    dist = override_distribution(override, key)
    if dist is None:
        raise SparseyConfigError(
            f"{key}: '{spec}' is a single value, not a search dimension; write "
            f"choice({spec}, ...) or a list")
    return dist


def override_distribution(override: Any, key: str) -> BaseDistribution | None:
    """A Hydra sweep override as a distribution; None for a plain (fixed) override."""
    from hydra.core.override_parser.types import Transformer

    if not override.is_sweep_override():
        return None
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return _categorical(list(override.sweep_iterator(transformer=Transformer.encode)), key)
    if override.is_range_sweep():
        start, stop, step = value.start, value.stop, value.step
        if any(isinstance(v, float) for v in (start, stop, step)):
            # range() excludes stop, like Python's: the last value is the largest below it
            n = math.ceil((stop - start) / step - 1e-12)
            return FloatDistribution(float(start), float(start + (n - 1) * step), step=step)
        return IntDistribution(int(start), int(stop) - 1, step=int(step))
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SparseyConfigError(f"{key}: unsupported sweep '{override.input_line}'")


def build_space(params: dict[str, Any]) -> dict[str, BaseDistribution]:
    """`hpo.params` as Optuna distributions, keyed by config key."""
    return {name: distribution(spec, f"hpo.params.{name}") for name, spec in params.items()}


def split_arguments(arguments: list[str]
                    ) -> tuple[dict[str, BaseDistribution], dict[str, str], list[str]]:
    """Command-line overrides: sweeps (`x=4,9`, `x=interval(0,1)`) join the search space;
    every other override is passed on unchanged to each trial.

    Returns the sweeps' distributions, the key element each was written with (a config
    group such as `network` must be overridden as written, not with `++`), and the rest.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space: dict[str, BaseDistribution] = {}
    written: dict[str, str] = {}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        element = override.get_key_element()
        key = element.lstrip("+~")
        dist = override_distribution(override, key)
        if dist is None:
            fixed.append(override.input_line)
        else:
            space[key] = dist
            written[key] = element
    return space, written, fixed


def fixed_keys(fixed: list[str]) -> list[str]:
    """The config keys that plain command-line overrides set (config groups included)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return [o.get_key_element().lstrip("+~")
            for o in OverridesParser.create().parse_overrides(fixed)]


def grid_values(dist: BaseDistribution, key: str) -> list[Any]:
    """The finite values of a dimension for grid search."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        n = int(round((dist.high - dist.low) / dist.step)) + 1
        return [round(dist.low + i * dist.step, 12) for i in range(n)]
    raise SparseyConfigError(
        f"hpo.params.{key}: grid search needs a finite set of values; give a list of choices "
        "or a range with a step (e.g. {type: float, low: 0.1, high: 0.5, step: 0.1})")


def check_keys(space: dict[str, BaseDistribution], config: DictConfig, registry: Any,
               prefix: str = "hpo.params.") -> None:
    """Every searched key must exist, or be a layer parameter the layer's component knows;
    errors name the key as written (`hpo.params.KEY`, or a command-line sweep's KEY)."""
    for key in space:
        if OmegaConf.select(config, key, default=_Missing) is not _Missing:
            continue
        m = _LAYER_KEY.match(key)
        if m:
            index, field = int(m.group(1)), m.group(2)
            layers = OmegaConf.select(config, "network.layers", default=None) or []
            if index >= len(layers):
                raise SparseyConfigError(
                    f"{prefix}{key}: the network defines {len(layers)} layers "
                    f"(indices 0..{len(layers) - 1})")
            name = layers[index].get("name", "sparsey")
            fields = registry.get("layer", name, key=f"network.layers.{index}.name").params
            if field in fields.model_fields:
                continue
            raise SparseyConfigError(
                f"{prefix}{key}: layer '{name}' has no parameter '{field}'; known: "
                f"{', '.join(sorted(fields.model_fields))}")
        raise SparseyConfigError(
            f"{prefix}{key}: no such key in the composed config; check the spelling "
            "(e.g. network.layers.0.num_macs, trainer.num_epochs)")


class _Missing:
    """Sentinel for OmegaConf.select."""


def format_value(value: Any) -> str:
    """A Python value in Hydra's override grammar (strings quoted, so '4' stays a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if _BARE.fullmatch(str(value)) and str(value).lower() not in _KEYWORDS:
        return str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def trial_overrides(params: dict[str, Any], written: dict[str, str] | None = None) -> list[str]:
    """One override per sampled value. `hpo.params` keys use `++key=value`, which adds layer
    parameters the network file leaves at their defaults (e.g. sigmoid_lambda) and overrides
    the ones it sets; command-line sweeps keep the key as written (config groups)."""
    written = written or {}
    return [f"{written.get(key, '++' + key)}={format_value(value)}"
            for key, value in params.items()]
