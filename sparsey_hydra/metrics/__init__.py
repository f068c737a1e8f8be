"""Built-in metrics, one file each; registered through the plugin hooks."""

from sparsey_hydra.metrics.base import Metric, MetricParams
from sparsey_hydra.metrics.basis_average import BasisAverage
from sparsey_hydra.metrics.basis_set_size import BasisSetSize
from sparsey_hydra.metrics.familiarity import Familiarity
from sparsey_hydra.metrics.feature_coverage import FeatureCoverage
from sparsey_hydra.metrics.match_accuracy import MatchAccuracy, MatchAccuracyParams
from sparsey_hydra.metrics.num_activations import NumActivations, NumActivationsParams
from sparsey_hydra.metrics.sisc_adherence import SiscAdherence, SiscAdherenceParams
from sparsey_hydra.plugins import Component

BUILTIN_METRICS = [
    Component("num_activations", NumActivations, NumActivationsParams,
              "1 where a MAC passed the activation gate (layerwise_sum: active MACs)"),
    Component("basis_set_size", BasisSetSize, MetricParams,
              "distinct codes per MAC over training (exact tuples); training only"),
    Component("basis_average", BasisAverage, MetricParams,
              "mean input seen through each MAC's projected RF while active; training only"),
    Component("feature_coverage", FeatureCoverage, MetricParams,
              "share of the input's on-pixels reaching each MAC (layer-1 gated) + layer union"),
    Component("familiarity", Familiarity, MetricParams, "global familiarity G per active MAC"),
    Component("match_accuracy", MatchAccuracy, MatchAccuracyParams,
              "eval code vs the nearest training input's code (Jaccard); eval only"),
    Component("sisc_adherence", SiscAdherence, SiscAdherenceParams,
              "similar inputs → similar codes (method: cosine or pearson)"),
]

__all__ = ["BUILTIN_METRICS", "Metric", "MetricParams"]
