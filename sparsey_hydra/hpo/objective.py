"""The value a trial reports: weighted metric terms from the run summary (spec §5, fixing B17).

Each term is read from the phase where its metric is defined (basis_set_size only exists in
training), `product` is Π vⱼ^wⱼ so weights change the ranking, and the study's declared
direction is the only direction used: by the sampler and for "best".
"""

from __future__ import annotations

import math
from typing import Any

from sparsey_hydra.hpo.config import HpoConfig, Term, metric_phases, term_phase


class ObjectiveError(ValueError):
    """A trial's metrics cannot give a value (e.g. nothing was active): the trial fails."""


def term_value(term: Term, summary: dict[str, Any], phase: str, key: str) -> float:
    """The term's metric mean over the selected layer(s) of `phase`."""
    per_layer = summary[phase]["metrics"].get(term.metric)
    if per_layer is None:
        raise ObjectiveError(f"{key}: metric '{term.metric}' was not recorded in {phase}")
    if term.layer == "mean":
        vals = [v for v in per_layer if v is not None]
        if not vals:
            raise ObjectiveError(
                f"{key}: metric '{term.metric}' has no value in {phase} on any layer "
                "(no MAC was active); this configuration cannot be scored")
        return float(sum(vals) / len(vals))
    index = len(per_layer) - 1 if term.layer == "top" else int(term.layer) - 1
    if index >= len(per_layer):
        raise ObjectiveError(
            f"{key}.layer: the network has {len(per_layer)} layers, the term asks for layer "
            f"{term.layer}; use layer: top or mean")
    value = per_layer[index]
    if value is None:
        raise ObjectiveError(
            f"{key}: metric '{term.metric}' has no value in {phase} on layer {index + 1} "
            "(no MAC was active there); this configuration cannot be scored")
    return float(value)


def combine(kind: str, weighted: list[tuple[float, float]], key: str = "hpo.objective",
            names: list[str] | None = None) -> float:
    """Combine (weight, value) pairs: sum Σwv, mean Σwv/J, product Πv^w."""
    if kind == "sum":
        return float(sum(w * v for w, v in weighted))
    if kind == "mean":
        return float(sum(w * v for w, v in weighted) / len(weighted))
    if kind == "product":
        out = 1.0
        for j, (w, v) in enumerate(weighted):
            what = f"metric '{names[j]}'" if names else "the value"
            if v == 0 and w < 0:
                raise ObjectiveError(
                    f"{key}.terms.{j}: {what} is 0 and its weight {w} is negative, so "
                    "Π v^w is infinite; this configuration cannot be scored")
            if v < 0:
                raise ObjectiveError(
                    f"{key}.terms.{j}: {what} is negative ({v}); combine: product needs "
                    "values >= 0, use combine: sum for signed metrics")
            out *= v ** w
        return float(out)
    raise ObjectiveError(f"{key}.combine: unknown combine '{kind}'")


def evaluate(hpo: HpoConfig, summary: dict[str, Any], registry: Any) -> float | list[float]:
    """The trial's objective value (one float) or values (one per objective)."""
    values: list[tuple[float, float]] = []
    for j, term in enumerate(hpo.terms):
        key = hpo.term_key(j)
        phase = term_phase(term, metric_phases(term.metric, registry, f"{key}.metric"))
        values.append((term.weight, term_value(term, summary, phase, key)))
    if hpo.objectives is not None:
        out = [w * v for w, v in values]
    else:
        assert hpo.objective is not None
        out = [combine(hpo.objective.combine, values, "hpo.objective",
                       [t.metric for t in hpo.terms])]
    for v in out:
        if not math.isfinite(v):
            raise ObjectiveError(f"hpo: the objective is not finite ({v}); check the weights")
    return out if hpo.objectives is not None else out[0]
