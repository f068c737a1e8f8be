"""A trial's value: weighted terms, each from its metric's phase, combined one way."""

from __future__ import annotations

import math

import pytest

from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.hpo.config import parse_hpo, validate_hpo
from sparsey_hydra.hpo.objective import ObjectiveError, combine, evaluate
from sparsey_hydra.plugins import get_registry

SUMMARY = {
    "train": {"metrics": {"basis_set_size": [12.0, 4.0, None],
                          "num_activations": [0.5, 0.25, 1.0],
                          "match_accuracy": [0.0, 0.0, 0.0]}},
    "eval": {"metrics": {"basis_set_size": [None, None, None],
                         "num_activations": [0.8, 0.4, 1.0],
                         "match_accuracy": [0.3, 0.6, 0.9]}},
}
METRICS = [{"name": n} for n in ("basis_set_size", "num_activations", "match_accuracy")]


def study(**objective: object) -> dict:
    return {"study_name": "s", "params": {"x": [1, 2]}, "objective": objective}


@pytest.mark.parametrize(("combine_kind", "expected"), [
    ("sum", 2.0 * 8.0 + 0.5 * 2.2 / 3),
    ("mean", (2.0 * 8.0 + 0.5 * 2.2 / 3) / 2),
    ("product", 8.0 ** 2.0 * (2.2 / 3) ** 0.5),
])
def test_combine_kinds(combine_kind: str, expected: float) -> None:
    hpo = parse_hpo(study(combine=combine_kind, terms=[
        {"metric": "basis_set_size", "weight": 2.0},      # mean of train layers 1-2 = 8
        {"metric": "num_activations", "weight": 0.5}]))   # eval mean = 2.2 / 3
    assert evaluate(hpo, SUMMARY, get_registry()) == pytest.approx(expected)


def test_product_weights_change_the_ranking() -> None:
    """Π vⱼ^wⱼ, not Π vⱼ: with a negative weight a larger value ranks lower."""
    a, b = [(1.0, 4.0), (-1.0, 2.0)], [(1.0, 3.0), (-1.0, 1.0)]
    assert combine("product", a) == pytest.approx(2.0)
    assert combine("product", b) == pytest.approx(3.0)
    assert math.prod(v for _, v in a) > math.prod(v for _, v in b)  # unweighted: other order


def test_each_term_reads_its_metrics_phase_and_layer() -> None:
    hpo = parse_hpo(study(terms=[{"metric": "basis_set_size", "layer": 2},  # train only
                                 {"metric": "match_accuracy", "layer": "top"},  # eval
                                 {"metric": "num_activations", "layer": 1, "phase": "train"}]))
    assert evaluate(hpo, SUMMARY, get_registry()) == pytest.approx(4.0 + 0.9 + 0.5)


def test_multi_objective_values_one_per_term() -> None:
    hpo = parse_hpo({"study_name": "s", "params": {"x": [1]}, "objective": None, "objectives": [
        {"metric": "basis_set_size", "direction": "minimize"},
        {"metric": "match_accuracy", "direction": "maximize", "weight": 2.0}]})
    assert hpo.directions == ["minimize", "maximize"]
    assert evaluate(hpo, SUMMARY, get_registry()) == pytest.approx([8.0, 2.0 * 0.6])


@pytest.mark.parametrize(("terms", "message"), [
    ([{"metric": "basis_set_size", "layer": 3}], "has no value in train on layer 3"),
    ([{"metric": "basis_set_size", "layer": 4}], "the network has 3 layers"),
    ([{"metric": "num_activations", "weight": -1.0}, {"metric": "match_accuracy", "layer": 1,
                                                     "phase": "train"}], "is 0 and its weight"),
])
def test_unscorable_trials_fail_with_the_term_key(terms: list, message: str) -> None:
    hpo = parse_hpo(study(combine="product", terms=[
        {**t, "weight": -1.0} if t.get("metric") == "match_accuracy" else t for t in terms]))
    with pytest.raises(ObjectiveError, match=r"^hpo\.objective\.terms\.\d") as err:
        evaluate(hpo, SUMMARY, get_registry())
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "message"), [
    (study(terms=[{"metric": "sisc_adherence"}]),
     "hpo.objective.terms.0.metric: 'sisc_adherence' is not computed; add it to trainer.metrics"),
    (study(terms=[{"metric": "basis_set_size", "phase": "eval"}]),
     "hpo.objective.terms.0.phase: metric 'basis_set_size' is defined only in train"),
    (study(terms=[]), "hpo.objective.terms:"),
    ({"study_name": "s", "params": {}, "objective": None, "objectives": None},
     "hpo: give exactly one of `objective`"),
    ({**study(terms=[{"metric": "basis_set_size"}]), "strategy": "anneal"}, "hpo.strategy:"),
    ({**study(terms=[{"metric": "basis_set_size"}]), "heartbeat_interval_s": 10,
      "grace_period_s": 10}, "hpo.grace_period_s: must be longer than heartbeat_interval_s"),
])
def test_bad_studies_are_one_line_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(SparseyConfigError) as err:
        validate_hpo(values, METRICS, get_registry())
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
