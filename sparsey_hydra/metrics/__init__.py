"""Built-in metrics, one file each; registered through the plugin hooks."""

from sparsey_hydra.metrics.base import Metric, MetricParams
from sparsey_hydra.metrics.basis_set_size import BasisSetSize
from sparsey_hydra.metrics.familiarity import Familiarity
from sparsey_hydra.metrics.match_accuracy import MatchAccuracy, MatchAccuracyParams
from sparsey_hydra.metrics.num_activations import NumActivations, NumActivationsParams
from sparsey_hydra.metrics.sisc_adherence import SiscAdherence, SiscAdherenceParams
from sparsey_hydra.plugins import Component

BUILTIN_METRICS = [
    Component("num_activations", NumActivations, NumActivationsParams,
              "1 where a MAC passed the activation gate"),
    Component("basis_set_size", BasisSetSize, MetricParams,
              "distinct codes per MAC over training (exact tuples)"),
    Component("familiarity", Familiarity, MetricParams, "global familiarity G per active MAC"),
    Component("match_accuracy", MatchAccuracy, MatchAccuracyParams,
              "eval code vs nearest training input's code (Jaccard)"),
    Component("sisc_adherence", SiscAdherence, SiscAdherenceParams,
              "similar inputs → similar codes (cosine or Pearson)"),
]

__all__ = ["BUILTIN_METRICS", "Metric", "MetricParams"]
