"""The `hpo` block: one study (search space, objective, strategy, trial count, storage).

Validated twice with the same model: once by the sweeper before any trial runs (a bad study
stops the sweep with one line), and in every trial with the rest of the config, so a trial
whose sampled values are invalid fails on its own, with the validation message.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sparsey_hydra.errors import SparseyConfigError

STRATEGIES = ("random", "grid", "tpe", "cmaes", "nsga2")
Direction = Literal["minimize", "maximize"]
LayerSelector = Literal["mean", "top"] | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Term(_Strict):
    """One metric of the objective; its value is the per-layer mean from the run summary."""

    metric: str
    weight: float = 1.0
    #: `mean` over the layers that have a value, `top` (the highest layer) or a 1-based layer
    layer: LayerSelector = "mean"
    #: null: eval when the metric is defined there, else train (where basis_set_size lives)
    phase: Literal["train", "eval"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Term:
        if isinstance(self.layer, int) and self.layer < 1:
            raise ValueError(f"layer is 1-based (1 = the lowest layer), got {self.layer}")
        if not math.isfinite(self.weight):
            raise ValueError(f"weight must be a finite number, got {self.weight}")
        return self


class DirectedTerm(Term):
    """A term of a multi-objective study: each objective has its own direction."""

    direction: Direction


class Objective(_Strict):
    """Weighted terms combined into one value, optimised in one declared direction."""

    direction: Direction = "maximize"
    #: sum = Σ wⱼvⱼ, mean = Σ wⱼvⱼ / J, product = Π vⱼ^wⱼ (so the weights still matter)
    combine: Literal["sum", "mean", "product"] = "sum"
    terms: list[Term] = Field(min_length=1)


class TrialInfo(_Strict):
    """Set by the sweeper on each trial's config: links the run to its Optuna trial."""

    study: str
    number: int
    #: store key → id of the `hpo_runs` row this trial's experiment links to
    hpo_run: dict[str, Any] = Field(default_factory=dict)


class HpoConfig(_Strict):
    study_name: str = Field(min_length=1)
    #: null = the database of the embedded store (system.store.url, sparsey.db by default)
    storage: str | None = None
    #: the study's total: a rerun with the same study name runs only the missing trials
    n_trials: int = Field(default=20, ge=1)
    strategy: Literal["random", "grid", "tpe", "cmaes", "nsga2"] = "tpe"
    seed: int | None = 0
    #: extra keyword arguments for the Optuna sampler (e.g. n_startup_trials, population_size)
    sampler_kwargs: dict[str, Any] = Field(default_factory=dict)
    objective: Objective | None = None
    objectives: list[DirectedTerm] | None = None
    #: search space: config key → [choices] | {type, low, high, step, log} | "interval(a, b)"
    params: dict[str, Any] = Field(default_factory=dict)
    #: best config YAML, Pareto front and plots go to <output_dir>/<study_name>/
    output_dir: str = "hpo_results"
    plots: bool = True
    #: trials launched together (one launcher batch); null = hydra.launcher.n_jobs or 1
    n_jobs: int | None = Field(default=None, ge=1)
    #: Optuna heartbeat of each running trial, every this many seconds
    heartbeat_interval_s: int = Field(default=10, ge=1)
    #: a RUNNING trial without a heartbeat this long is failed and its point retried
    grace_period_s: int = Field(default=60, ge=2)
    #: how often one point is retried after its workers died
    max_retry: int = Field(default=3, ge=0)
    #: fail a RUNNING trial at once when its worker process on this host is gone
    local_pid_check: bool = True
    trial: TrialInfo | None = None

    @field_validator("grace_period_s")
    @classmethod
    def _grace(cls, value: int, info: ValidationInfo) -> int:
        beat = info.data.get("heartbeat_interval_s")
        if beat is not None and value <= beat:
            raise ValueError(f"must be longer than heartbeat_interval_s ({beat}), or live "
                             "trials look dead; e.g. 6 × the heartbeat interval")
        return value

    @model_validator(mode="after")
    def _check(self) -> HpoConfig:
        if (self.objective is None) == (self.objectives is None):
            raise ValueError(
                "give exactly one of `objective` (weighted terms, one direction) or "
                "`objectives` (a list of terms with directions → Pareto front); "
                "set the other to null")
        if self.objectives is not None and len(self.objectives) < 2:
            raise ValueError("`objectives` needs at least two terms; use `objective` for one")
        if self.strategy == "cmaes" and self.objectives is not None:
            raise ValueError("strategy cmaes optimises one objective; use nsga2, tpe or random")
        return self

    @property
    def directions(self) -> list[str]:
        if self.objectives is not None:
            return [t.direction for t in self.objectives]
        assert self.objective is not None
        return [self.objective.direction]

    @property
    def terms(self) -> list[Term]:
        if self.objectives is not None:
            return list(self.objectives)
        assert self.objective is not None
        return list(self.objective.terms)

    def term_key(self, j: int) -> str:
        """Config key of term j, for error messages."""
        return f"hpo.objectives.{j}" if self.objectives is not None else \
            f"hpo.objective.terms.{j}"

    def objective_spec(self) -> dict[str, Any]:
        """What the values mean: stored with the study so a rerun cannot silently change it."""
        return {"objective": None if self.objective is None else self.objective.model_dump(),
                "objectives": None if self.objectives is None else
                [t.model_dump() for t in self.objectives]}


def parse_hpo(values: dict[str, Any]) -> HpoConfig:
    """The `hpo` mapping as a model; the first problem as one line naming its key."""
    from sparsey_hydra.plugins import format_validation_error

    if not isinstance(values, dict):
        raise SparseyConfigError(
            f"hpo: expected a study mapping (e.g. hpo=basis_set_growth), got {values!r}")
    try:
        return HpoConfig(**values)
    except ValidationError as exc:
        raise SparseyConfigError(format_validation_error(exc, "hpo")) from None


def validate_hpo(values: dict[str, Any], trainer_metrics: list[dict[str, Any]],
                 registry: Any) -> HpoConfig:
    """The study plus what it needs from the rest of the config: its metrics are computed."""
    hpo = parse_hpo(values)
    listed = [m.get("name") for m in trainer_metrics]
    for j, term in enumerate(hpo.terms):
        key = hpo.term_key(j)
        if term.metric not in listed:
            raise SparseyConfigError(
                f"{key}.metric: '{term.metric}' is not computed; add it to trainer.metrics "
                f"(now: {', '.join(str(n) for n in listed) or 'none'})")
        phases = metric_phases(term.metric, registry, f"{key}.metric")
        if term.phase is not None and term.phase not in phases:
            raise SparseyConfigError(
                f"{key}.phase: metric '{term.metric}' is defined only in "
                f"{' and '.join(phases)}; set phase to {phases[0]} or null")
    return hpo


def metric_phases(name: str, registry: Any, key: str) -> tuple[str, ...]:
    """The phases a metric is defined in, from its registered class (both if it says nothing)."""
    comp = registry.get("metric", name, key=key)
    return tuple(getattr(comp.factory, "phases", ("train", "eval")))


def term_phase(term: Term, phases: tuple[str, ...]) -> str:
    """Where a term's value comes from: eval when defined there, else train (spec §5, B17)."""
    if term.phase is not None:
        return term.phase
    return "eval" if "eval" in phases else "train"


def trial_hpo_run(tree: dict[str, Any]) -> dict[str, Any] | None:
    """The `hpo_runs` ids (store key → id) an HPO trial's experiment links to, else None."""
    trial = (tree.get("hpo") or {}).get("trial") or {}
    return dict(trial.get("hpo_run") or {}) or None
