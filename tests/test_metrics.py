"""Every built-in metric (spec §5) against values worked out by hand on a tiny network.

The network is written down, not built: a 1×4 input (pixels 0–3), layer 1 with two MACs whose
RFs are pixels {0, 1} and {1, 2} (pixel 3 reaches nothing), layer 2 with one MAC over both.
Layer outputs are given directly (active MACs, codes, G), so each expected value below follows
from the §5 formula alone; the comments show the arithmetic.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import MetricParams
from sparsey_hydra.metrics.basis_average import BasisAverage
from sparsey_hydra.metrics.basis_set_size import BasisSetSize
from sparsey_hydra.metrics.familiarity import Familiarity
from sparsey_hydra.metrics.feature_coverage import UNION, FeatureCoverage
from sparsey_hydra.metrics.match_accuracy import MatchAccuracy, MatchAccuracyParams
from sparsey_hydra.metrics.num_activations import NumActivations, NumActivationsParams
from sparsey_hydra.metrics.reduction import (
    avg_by_layerwise_mean,
    is_better,
    layer_values,
    model_values,
    reduce,
)
from sparsey_hydra.metrics.sisc_adherence import SiscAdherence, SiscAdherenceParams

NAN = float("nan")


def tiny_model() -> SimpleNamespace:
    """What metrics read from a model: input shape, each layer's padded RF index, the seed."""
    return SimpleNamespace(
        input_shape=(1, 4), seed=0, device=torch.device("cpu"),
        layers=[SimpleNamespace(num_macs=2, rf_index=torch.tensor([[0, 1], [1, 2]])),
                SimpleNamespace(num_macs=1, rf_index=torch.tensor([[0, 1]]))])


def out(codes: list[list[list[int]] | list[list[int]]], k: int,
        g: list[list[float]] | None = None) -> LayerOutput:
    """A layer's output from its codes (B×M×Q, [-1]*Q = inactive MAC); y is built from them."""
    c = torch.tensor(codes)
    b, m, q = c.shape
    active = c[..., 0] >= 0
    y = torch.zeros(b, m, q, k)
    y.scatter_(-1, c.clamp(min=0).unsqueeze(-1), 1.0)
    y = (y * active[..., None, None]).reshape(b, m, q * k)
    gv = torch.tensor(g) if g is not None else torch.where(active, 1.0, NAN)
    return LayerOutput(x=torch.zeros(b, m, 1), active=active, codes=c, y=y,
                       v=torch.zeros(b, m, q, k), g=gv)


def first(o: LayerOutput, n: int) -> LayerOutput:
    """The first n frames of a layer output."""
    values = {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    return LayerOutput(**{k: v[:n] if isinstance(v, torch.Tensor) else v
                          for k, v in values.items()})


def images(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 1, 4)


X = [-1, -1]  # an inactive MAC's code (Q = 2)
# Four frames: A = pixels {0,1} (layer-1 MAC 0 active), B = {1,2,3} (MAC 1), a blank one, and
# all four pixels (both layer-1 MACs active, the layer-2 MAC not).
FRAMES = images([1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1])
LAYER1 = out([[[0, 1], X], [X, [1, 0]], [X, X], [[1, 1], [1, 0]]], k=2,
             g=[[0.25, NAN], [NAN, 0.5], [NAN, NAN], [1.0, 0.75]])
LAYER2 = out([[[2, 0]], [[2, 0]], [X], [X]], k=3, g=[[0.0], [1.0], [NAN], [NAN]])
OUTS = [LAYER1, LAYER2]


def close(actual: torch.Tensor, expected: list) -> None:
    exp = torch.tensor(expected, dtype=torch.float32)
    assert actual.shape == exp.shape, (actual.shape, exp.shape)
    assert torch.allclose(actual.float(), exp, atol=1e-6, equal_nan=True), (actual, exp)


def bound(metric_cls, params=None):
    metric = metric_cls(params or MetricParams(name=metric_cls.name))
    metric.bind(tiny_model(), {})
    return metric


# -- num_activations, familiarity ---------------------------------------------------------------


def test_num_activations_is_the_gate_and_layerwise_sum_counts_active_macs() -> None:
    na = NumActivations(NumActivationsParams())
    assert na.params.best_value == "min_by_layerwise_mean"
    values = na.compute(OUTS, FRAMES, "eval")
    close(values[0], [[1, 0], [0, 1], [0, 0], [1, 1]])
    close(values[1], [[1], [1], [0], [0]])
    # layerwise_sum: active MACs per layer and frame; sum: over all layers
    close(layer_values(values, "layerwise_sum"), [[1, 1], [1, 1], [0, 0], [2, 0]])
    close(reduce(values, "sum"), [2, 2, 0, 2])


def test_familiarity_is_g_of_active_macs_and_undefined_elsewhere() -> None:
    g = Familiarity(MetricParams(name="familiarity")).compute(OUTS, FRAMES, "train")
    close(g[0], [[0.25, NAN], [NAN, 0.5], [NAN, NAN], [1.0, 0.75]])
    # layerwise_mean skips the undefined values: (1 + .75)/2; a layer with none stays NaN
    close(layer_values(g, "layerwise_mean"), [[0.25, 0.0], [0.5, 1.0], [NAN, NAN], [0.875, NAN]])


# -- basis_set_size ---------------------------------------------------------------------------


def test_basis_set_size_counts_exact_distinct_codes_during_training_only() -> None:
    bss = BasisSetSize(MetricParams(name="basis_set_size"))
    # MAC 0: [0,1], inactive, -, [1,1] → 1, 1, 1, 2; MAC 1: -, [1,0], -, [1,0] (repeat) → 0,1,1,1
    close(bss.compute(OUTS, FRAMES, "train")[0], [[1, 0], [1, 1], [1, 1], [2, 1]])
    close(bss.compute(OUTS, FRAMES, "train")[1], [[1], [1], [1], [1]])  # [2,0] seen already
    # the same codes again add nothing; [0,1] and [1,0] are different codes of one MAC
    flipped = out([[[1, 0], [0, 1]]], k=2)
    close(bss.compute([flipped, out([[[0, 2]]], k=3)], FRAMES[:1], "train")[0], [[3, 2]])
    assert bss.compute(OUTS, FRAMES, "eval") is None  # training only: undefined, not 0


def test_basis_set_size_is_exact_for_codes_wider_than_an_int64() -> None:
    """Q = 40, K = 16: 160 bits per code; codes differing in one CM are all distinct (B13)."""
    q, k, n = 40, 16, 64
    gen = torch.Generator().manual_seed(1)
    base = torch.randint(0, k, (1, 1, q), generator=gen)
    codes = base.repeat(n, 1, 1)
    codes[torch.arange(n), 0, torch.arange(n) % q] = (base[0, 0, torch.arange(n) % q] + 1
                                                      + torch.arange(n) // q) % k
    big = out(codes.tolist(), k=k)
    bss = BasisSetSize(MetricParams(name="basis_set_size"))
    running = bss.compute([big], torch.zeros(n, 1, 4), "train")[0]
    close(running[:, 0], list(range(1, n + 1)))
    again = bss.compute([big], torch.zeros(n, 1, 4), "train")[0]
    close(again[:, 0], [n] * n)


# -- basis_average ------------------------------------------------------------------------------


def test_basis_average_is_the_mean_input_through_the_projected_rf() -> None:
    ba = bound(BasisAverage)
    two = FRAMES[:2]
    values = ba.compute([first(LAYER1, 2), first(LAYER2, 2)], two, "train")
    # Π_1: MAC 0 = {0,1}, MAC 1 = {1,2}; Π_2 = {0,1,2}. Logged: mean of BA over Π, so far.
    # frame A: MAC 0 sees x_A∧Π = {0,1} → 2/2; MAC 1 never active → 0; layer 2: 2 of 3 → 2/3
    # frame B: MAC 1 sees {1,2} → 1; layer 2: (2 + 2)/(2 frames · 3 pixels) = 2/3
    close(values[0], [[1, 0], [1, 1]])
    close(values[1], [[2 / 3], [2 / 3]])
    avg = ba.averages()
    close(avg[0].reshape(2, 4), [[1, 1, 0, 0], [0, 1, 1, 0]])
    close(avg[1].reshape(1, 4), [[0.5, 1, 0.5, 0]])  # (x_A + x_B)/2 on {0,1,2}; pixel 3 is 0
    assert ba.compute(OUTS, FRAMES, "eval") is None


def test_basis_average_of_a_never_active_mac_is_zero() -> None:
    ba = bound(BasisAverage)
    blank = [out([[X, X]], k=2), out([[X]], k=3)]
    close(ba.compute(blank, FRAMES[2:3], "train")[0], [[0, 0]])
    assert torch.equal(ba.averages()[0], torch.zeros(2, 1, 4))


# -- feature_coverage ---------------------------------------------------------------------------


def test_feature_coverage_per_mac_is_gated_by_layer_one_and_has_a_union() -> None:
    fc = bound(FeatureCoverage)
    values = fc.compute(OUTS, FRAMES, "eval")
    # A: MAC 0 covers {0,1} of x = {0,1} → 1; MAC 1 is inactive → 0 (sparseypy: 1/2, B14)
    # B: x = {1,2,3}; MAC 1 covers {1,2} → 2/3.  blank → 0, not NaN.
    # all four: each MAC covers 2 of 4 → 1/2
    close(values[0], [[1, 0], [0, 2 / 3], [0, 0], [0.5, 0.5]])
    # layer 2 reaches what its active RF MACs reach: A → {0,1} = 1; B → {1,2} = 2/3;
    # frame 4: the layer-2 MAC is inactive → 0
    close(values[1], [[1], [2 / 3], [0], [0]])
    union = fc.extras()[UNION]
    close(union[0], [1, 2 / 3, 0, 3 / 4])  # frame 4: {0,1,2} of {0,1,2,3}
    close(union[1], [1, 2 / 3, 0, 0])


# -- match_accuracy and sisc_adherence ----------------------------------------------------------


ONE_MAC = tiny_model()
ONE_MAC.layers = ONE_MAC.layers[:1]


def single(codes: list[list[int]]) -> list[LayerOutput]:
    """One layer, K = 2: MAC 0 has the given code in each frame, MAC 1 is inactive."""
    return [out([[c, X] for c in codes], k=2)]


STORED = images([1, 1, 0, 0], [0, 1, 1, 1], [0, 0, 1, 1])  # A, B, C
STORED_CODES = [[0, 1], [0, 0], [1, 0]]
E = images([1, 1, 1, 0])  # J(E, ·) = 2/3, 2/4, 1/4


def trained(metric) -> None:
    """A, B, C learned one frame at a time."""
    for i in range(3):
        metric.compute(single([STORED_CODES[i]]), STORED[i:i + 1], "train")


def test_match_accuracy_uses_the_nearest_training_input_by_jaccard() -> None:
    ma = MatchAccuracy(MatchAccuracyParams())
    ma.bind(ONE_MAC, {})
    assert ma.compute(single([[0, 0]]), E, "eval")[0].isnan().all()  # nothing stored yet
    for i in range(3):
        assert ma.compute(single([STORED_CODES[i]]), STORED[i:i + 1], "train") is None
    # E's nearest is A (2/3): MAC 0 [0,0] vs [0,1] → 1 shared cell of 3 → 1/3;
    # MAC 1 inactive in both → a match (1), the reference choice (B15)
    close(ma.compute(single([[0, 0]]), E, "eval")[0], [[1 / 3, 1]])
    # an eval item equal to C gets C's code compared: identical → 1; MAC 1 active vs
    # inactive → 0
    close(ma.compute([out([[[1, 0], [1, 1]]], k=2)], STORED[2:3], "eval")[0], [[1, 0]])


def test_match_accuracy_memory_size_is_configurable() -> None:
    assert MatchAccuracyParams().approximation_batch_size is None  # every training item
    ma = MatchAccuracy(MatchAccuracyParams(approximation_batch_size=2))
    ma.bind(ONE_MAC, {})
    trained(ma)
    ma.compute(single([[0, 0]]), E, "eval")
    assert ma.memory.size == 2 and ma.memory.seen == 3
    with pytest.raises(ValidationError):
        MatchAccuracyParams(approximation_batch_size=0)


def sisc(method: str) -> SiscAdherence:
    metric = SiscAdherence(SiscAdherenceParams(method=method))
    metric.bind(ONE_MAC, {})
    return metric


# s_in = (2/3, 1/2, 1/4); E's code [0,1] vs A, B, C: s_code = (1, 1/3, 0)
# cosine: (2/3 + 1/6) / (√(10/9)·√(109/144)) = 30/√1090
# Pearson: centred s_code = (5, −1, −4)/9, s_in = (7, 1, −8)/36 → 66/√(42·114)
BY_HAND = {"cosine": 30 / math.sqrt(1090), "pearson": 66 / math.sqrt(42 * 114)}


@pytest.mark.parametrize("method, other", [("cosine", "pearson"), ("pearson", "cosine")])
def test_sisc_adherence_by_hand(method: str, other: str) -> None:
    metric = sisc(method)
    close(metric.compute(single([[0, 0]]), E, "eval")[0], [[0, 0]])  # 𝒮 empty → 0
    trained(metric)
    # MAC 1 is inactive everywhere: its s_code is all 0 → 0
    close(metric.compute(single([[0, 1]]), E, "eval")[0], [[BY_HAND[method], 0]])
    # the other method is reported beside it, from the same vectors
    close(metric.extras()[f"sisc_adherence_{other}"][0], [[BY_HAND[other], 0]])


def test_sisc_in_training_scores_a_frame_before_it_joins_the_memory() -> None:
    one_by_one, batched = sisc("cosine"), sisc("cosine")
    seq = [one_by_one.compute(single([STORED_CODES[i]]), STORED[i:i + 1], "train")[0]
           for i in range(3)]
    # frame A: 𝒮 empty → 0.  B vs A: s_in = (1/4), s_code = (1/3) → cosine 1.
    # C vs A, B: s_in = (0, 2/3), s_code = (0, 1/3) → 1
    close(torch.cat(seq)[:, 0], [0, 1, 1])
    # the same three frames as one batch (how the recorder hands them over): same values
    block = batched.compute(single(STORED_CODES), STORED, "train")[0]
    close(block, torch.cat(seq).tolist())
    assert len(batched.memory) == 3


def test_sisc_pearson_against_sparseypys_cosine_on_a_scaled_code() -> None:
    """A code that prefers the *less* similar input: cosine (sparseypy) stays high, Pearson
    says −1 (B16)."""
    cos, pear = sisc("cosine"), sisc("pearson")
    for metric in (cos, pear):
        for i in range(2):  # A, B with codes sharing one cell each with [0, 0]
            metric.compute(single([[[0, 1], [1, 1]][i]]), STORED[i:i + 1], "train")
    # E: s_in = (2/3, 1/2); E's code [1, 1]: s_code = (1/3, 1) — it prefers the *less*
    # similar input. cosine: (2/9 + 1/2)/(√(10/9)·√(25/36)) = (13/18)/(5√10/18) = 13/(5√10)
    # > 0; Pearson of two points is ±1: here −1
    close(cos.compute(single([[1, 1]]), E, "eval")[0][:, 0], [13 / (5 * math.sqrt(10))])
    close(pear.compute(single([[1, 1]]), E, "eval")[0][:, 0], [-1])


# -- reductions and best_value ---------------------------------------------------------------


V = [torch.tensor([[1.0, 3.0], [NAN, 2.0]]), torch.tensor([[4.0], [NAN]])]  # B = 2, M = 2, 1


def test_every_reduction_by_hand() -> None:
    assert reduce(V, "none") is V
    close(reduce(V, "layerwise_mean"), [[[2.0], [2.0]], [[4.0], [NAN]]])  # L×B×1
    close(reduce(V, "layerwise_sum"), [[[4.0], [2.0]], [[4.0], [NAN]]])
    close(reduce(V, "mean"), [3.0, 2.0])  # mean over layers of layer means; NaN skipped
    close(reduce(V, "sum"), [8.0, 2.0])
    close(reduce(V, "highest_layer"), [[4.0], [NAN]])
    close(reduce(V, "highest_layer_mean"), [4.0, NAN])
    close(model_values(layer_values(V, "layerwise_sum"), "layerwise_sum"), [8.0, 2.0])


def test_best_value_compares_the_mean_over_layers_of_layer_means() -> None:
    # layer 1: mean of 1, 3, 2 = 2; layer 2: 4 → avg(X) = 3
    assert avg_by_layerwise_mean(V) == pytest.approx(3.0)
    assert avg_by_layerwise_mean([torch.tensor([[NAN]])]) is None
    assert is_better(3.0, 2.0, "max_by_layerwise_mean")
    assert not is_better(3.0, 2.0, "min_by_layerwise_mean")
    assert not is_better(None, 2.0, "max_by_layerwise_mean")  # undefined never wins
    assert is_better(1.0, None, "min_by_layerwise_mean")


@pytest.mark.parametrize("entry, field", [
    ({"name": "familiarity", "reduction": "median"}, "reduction"),
    ({"name": "familiarity", "best_value": "max"}, "best_value"),
    ({"name": "familiarity", "colour": "red"}, "colour"),
    ({"name": "sisc_adherence", "method": "spearman"}, "method"),
])
def test_metric_entries_are_validated_by_pydantic(entry: dict, field: str) -> None:
    from sparsey_hydra.metrics import BUILTIN_METRICS

    params = {c.name: c.params for c in BUILTIN_METRICS}[entry["name"]]
    with pytest.raises(ValidationError) as info:
        params(**entry)
    assert field in str(info.value)
