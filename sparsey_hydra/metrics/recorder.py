"""Between the metrics and the sinks: reductions, resolution, running statistics.

A metric sees each frame's outputs as they were before the weight update. The layer outputs
are fresh tensors that learning only reads, so for a `batchable` metric (every built-in one)
`observe` just keeps them, and `flush` hands a block of consecutive frames to the metric as one
batch: a few tensor operations per block instead of per frame. Other metrics are computed at
once, frame by frame. Reductions, per-MAC statistics, the G histogram and the rows for the
store and W&B are all done per block as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from rich.markup import escape

from sparsey_hydra.core.model import save_atomic
from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.metrics.base import Metric, Phase, Reduction
from sparsey_hydra.metrics.basis_set_size import BasisSetSize, BasisSetTracker
from sparsey_hydra.metrics.reduction import SUMMING, layer_values, logged_layers, model_values

if TYPE_CHECKING:
    from sparsey_hydra.core.model import SparseyModel

Resolution = Literal["model", "layer", "mac"]
RESOLUTIONS: tuple[Resolution, ...] = ("model", "layer", "mac")
#: the store's step row: (phase, step, layer, metric, value); layer 0 = the whole model
StepRow = tuple[str, int, int, str, float | None]
StepSink = Callable[[Phase, int, dict[str, list[float | None]]], None]
G_BINS = 50
CHUNK_FRAMES = 256


def _py(v: float) -> float | None:
    return None if math.isnan(v) else v


@dataclass
class Series:
    """One metric's values for a block of frames (on the CPU; NaN = undefined)."""

    name: str
    save: bool
    logged: range  # 0-based layers whose layer/MAC values are logged
    layers: torch.Tensor  # F×L, reduced per the metric's reduction
    model: torch.Tensor  # F
    macs: list[torch.Tensor] | None  # per layer F×M_ℓ; None for a layer-level series


@dataclass
class MetricBlock:
    """Consecutive frames of one phase: steps first_step … first_step + frames − 1."""

    phase: Phase
    first_step: int
    frames: int
    series: list[Series]

    def rows(self, resolution: Resolution, saved_only: bool = True) -> list[StepRow]:
        """Store rows at `resolution`; each level includes the coarser ones.

        model: (phase, step, 0, name, value); layer: (…, ℓ, name, value) as well;
        mac: (…, ℓ, "name/mac<m>", value) as well.
        """
        level = RESOLUTIONS.index(resolution)
        steps = range(self.first_step, self.first_step + self.frames)
        out: list[StepRow] = []
        for s in self.series:
            if saved_only and not s.save:
                continue
            out.extend((self.phase, st, 0, s.name, _py(v))
                       for st, v in zip(steps, s.model.tolist(), strict=True))
            if level >= 1:
                per_frame = s.layers.tolist()
                for ell in s.logged:
                    out.extend((self.phase, st, ell + 1, s.name, _py(lv[ell]))
                               for st, lv in zip(steps, per_frame, strict=True))
            if level >= 2 and s.macs is not None:
                for ell in s.logged:
                    vals = s.macs[ell].tolist()
                    names = [f"{s.name}/mac{m}" for m in range(s.macs[ell].shape[1])]
                    out.extend((self.phase, st, ell + 1, nm, _py(v))
                               for st, row in zip(steps, vals, strict=True)
                               for nm, v in zip(names, row, strict=True))
        return out

    def logs(self, resolution: Resolution) -> list[dict[str, float]]:
        """One W&B dict per frame (`phase/name`, `…/layer<ℓ>`, `…/layer<ℓ>/mac<m>`); undefined
        values are left out."""
        level = RESOLUTIONS.index(resolution)
        frames: list[dict[str, float]] = [{} for _ in range(self.frames)]
        for s in self.series:
            base = f"{self.phase}/{s.name}"
            for d, v in zip(frames, s.model.tolist(), strict=True):
                if not math.isnan(v):
                    d[base] = v
            if level >= 1:
                for d, lv in zip(frames, s.layers.tolist(), strict=True):
                    d.update({f"{base}/layer{ell + 1}": lv[ell] for ell in s.logged
                              if not math.isnan(lv[ell])})
            if level >= 2 and s.macs is not None:
                for ell in s.logged:
                    pre = f"{base}/layer{ell + 1}/mac"
                    for d, row in zip(frames, s.macs[ell].tolist(), strict=True):
                        d.update({f"{pre}{m}": v for m, v in enumerate(row) if not math.isnan(v)})
        return frames

    def frame_values(self) -> list[dict[str, list[float | None]]]:
        """Per frame: name → the per-layer values (None = undefined), every layer."""
        frames: list[dict[str, list[float | None]]] = [{} for _ in range(self.frames)]
        for s in self.series:
            for d, lv in zip(frames, s.layers.tolist(), strict=True):
                d[s.name] = [_py(v) for v in lv]
        return frames


@dataclass
class PhaseStats:
    """Running sums for the summary and the plots, per layer and per MAC."""

    frames: int = 0
    seconds: float = 0.0
    active: list[torch.Tensor] = field(default_factory=list)  # Σ a per MAC
    g_sum: list[torch.Tensor] = field(default_factory=list)  # Σ G per MAC (active frames)
    g_count: list[torch.Tensor] = field(default_factory=list)
    g_hist: list[torch.Tensor] = field(default_factory=list)  # G_BINS counts on [0, 1]
    layer_sum: dict[str, torch.Tensor] = field(default_factory=dict)  # Σ per-frame layer value
    layer_count: dict[str, torch.Tensor] = field(default_factory=dict)
    model_sum: dict[str, float] = field(default_factory=dict)
    model_count: dict[str, int] = field(default_factory=dict)
    mac_sum: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    mac_count: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def add_outputs(self, active: list[torch.Tensor], g: list[torch.Tensor]) -> None:
        if not self.active:
            self.active = [torch.zeros(a.shape[1]) for a in active]
            self.g_sum = [torch.zeros(a.shape[1]) for a in active]
            self.g_count = [torch.zeros(a.shape[1]) for a in active]
            self.g_hist = [torch.zeros(G_BINS) for _ in active]
        for ell, (a, gv) in enumerate(zip(active, g, strict=True)):
            ok = a & ~torch.isnan(gv)
            self.active[ell] += a.sum(0).float()
            self.g_sum[ell] += torch.where(ok, gv, 0.0).sum(0).float()
            self.g_count[ell] += ok.sum(0).float()
            self.g_hist[ell] += torch.histc(gv[ok].float(), bins=G_BINS, min=0.0, max=1.0)
        self.frames += active[0].shape[0]

    def add_series(self, s: Series) -> None:
        ok = ~torch.isnan(s.layers)
        self.layer_sum[s.name] = self.layer_sum.get(s.name, 0) + torch.where(ok, s.layers, 0.0
                                                                             ).sum(0)
        self.layer_count[s.name] = self.layer_count.get(s.name, 0) + ok.sum(0)
        okm = ~torch.isnan(s.model)
        self.model_sum[s.name] = self.model_sum.get(s.name, 0.0) + float(s.model[okm].sum())
        self.model_count[s.name] = self.model_count.get(s.name, 0) + int(okm.sum())
        if s.macs is None:
            return
        sums = self.mac_sum.setdefault(s.name, [torch.zeros(v.shape[1]) for v in s.macs])
        counts = self.mac_count.setdefault(s.name, [torch.zeros(v.shape[1]) for v in s.macs])
        for ell, v in enumerate(s.macs):
            okv = ~torch.isnan(v)
            sums[ell] += torch.where(okv, v, 0.0).sum(0)
            counts[ell] += okv.sum(0)

    def layer_means(self) -> dict[str, list[float | None]]:
        """name → per layer, the mean over frames of its per-frame layer value."""
        return {k: [float(s) / int(c) if int(c) else None
                    for s, c in zip(v.tolist(), self.layer_count[k].tolist(), strict=True)]
                for k, v in self.layer_sum.items()}

    def model_means(self) -> dict[str, float | None]:
        return {k: v / self.model_count[k] if self.model_count[k] else None
                for k, v in self.model_sum.items()}

    def mac_means(self, name: str) -> list[torch.Tensor] | None:
        """Per layer, each MAC's mean over the frames where it was defined (NaN: never)."""
        if name not in self.mac_sum:
            return None
        return [torch.where(c > 0, s / c.clamp(min=1), torch.nan)
                for s, c in zip(self.mac_sum[name], self.mac_count[name], strict=True)]


@dataclass
class _Frame:
    phase: Phase
    outs: list[LayerOutput]
    images: torch.Tensor
    values: dict[str, list[torch.Tensor]]  # per-frame metrics: name → per layer B×M (or B)


def _cat_outputs(frames: list[_Frame]) -> tuple[list[LayerOutput], torch.Tensor]:
    """The block's frames as one batch, in order."""
    if len(frames) == 1:
        return frames[0].outs, frames[0].images
    outs = [LayerOutput.cat([f.outs[ell] for f in frames]) for ell in range(len(frames[0].outs))]
    return outs, torch.cat([f.images for f in frames])


class MetricRecorder:
    """Feeds every metric each frame, and the sinks and statistics every block of frames."""

    def __init__(self, model: SparseyModel, metrics: list[Metric], *,
                 sinks: Iterable[StepSink] = (), block_sinks: Iterable[Callable] = (),
                 chunk: int = CHUNK_FRAMES, print_values: Callable[[str], None] | None = None
                 ) -> None:
        self.model = model
        self.metrics = metrics
        shared: dict[str, Any] = {}
        for m in metrics:
            m.bind(model, shared)
        own = [m for m in metrics if isinstance(m, BasisSetSize)]
        self.basis_metric = own[0] if own else None
        self.basis = own[0].tracker if own else BasisSetTracker()
        self.sinks = list(sinks)
        self.block_sinks = list(block_sinks)
        self.chunk = 1 if print_values else chunk
        self.print_values = print_values
        self.stats: dict[str, PhaseStats] = {"train": PhaseStats(), "eval": PhaseStats()}
        self.step = {"train": 0, "eval": 0}
        self.growth: list[torch.Tensor] = []  # F×L distinct codes per layer after each frame
        self._meta: dict[str, tuple[Reduction, bool]] = {}
        self._buffer: list[_Frame] = []
        self._buffered = 0

    # -- per frame -----------------------------------------------------------------------
    def observe(self, phase: Phase, outs: list[LayerOutput], images: torch.Tensor) -> None:
        """Run every metric on this forward pass (before the weight update) and buffer."""
        if self._buffer and self._buffer[0].phase != phase:
            self.flush()
        values: dict[str, list[torch.Tensor]] = {}
        for metric in self.metrics:
            if not metric.batchable:
                self._run(metric, outs, images, phase, values)
        self._buffer.append(_Frame(phase, outs, images, values))
        self._buffered += images.shape[0]
        if self._buffered >= self.chunk:
            self.flush()

    def _run(self, metric: Metric, outs: list[LayerOutput], images: torch.Tensor,
             phase: Phase, values: dict[str, list[torch.Tensor]]) -> None:
        v = metric.compute(outs, images, phase)
        if v is None:
            return
        values[metric.name] = v
        red, save = metric.params.reduction, metric.params.save
        self._meta.setdefault(metric.name, (red, save))
        for name, ev in metric.extras().items():
            values[name] = ev
            self._meta.setdefault(name, ("layerwise_mean" if red in SUMMING else red, save))

    def buffered(self, phase: Phase) -> int:
        """Frames of `phase` observed but not yet flushed."""
        return self._buffered if self._buffer and self._buffer[0].phase == phase else 0

    # -- per block -----------------------------------------------------------------------
    def flush(self) -> None:
        """Reduce the buffered frames, update the statistics, feed the sinks."""
        if not self._buffer:
            return
        buf, self._buffer, self._buffered = self._buffer, [], 0
        phase = buf[0].phase
        outs, images = _cat_outputs(buf)
        n_layers = len(outs)
        frames = images.shape[0]
        values: dict[str, list[torch.Tensor]] = {}
        for metric in self.metrics:
            if metric.batchable:
                self._run(metric, outs, images, phase, values)
            elif metric.name in buf[0].values:
                for name in [metric.name, *metric.extras()]:
                    values[name] = [self._cat([f.values[name][ell] for f in buf])
                                    for ell in range(n_layers)]
        st = self.stats[phase]
        st.add_outputs([o.active.cpu() for o in outs], [o.g.cpu() for o in outs])
        if phase == "train":
            self._grow(outs, values)
        series = []
        for name, (red, save) in self._meta.items():
            if name not in values:
                continue
            per_layer = [v.float().cpu() for v in values[name]]
            if per_layer[0].dim() == 1:  # a layer-level series (e.g. the coverage union)
                layers, macs = torch.stack(per_layer, 1), None
            else:
                macs = per_layer
                layers = layer_values(macs, red)
            s = Series(name, save, logged_layers(red, n_layers), layers,
                       model_values(layers, red), macs)
            st.add_series(s)
            series.append(s)
        block = MetricBlock(phase, self.step[phase], frames, series)
        self.step[phase] += frames
        for sink in self.block_sinks:
            sink(block)
        if self.sinks or self.print_values:
            for i, values in enumerate(block.frame_values()):
                step = block.first_step + i
                for sink in self.sinks:
                    sink(phase, step, values)
                if self.print_values:
                    shown = ", ".join(f"{k}={[None if x is None else round(x, 4) for x in v]}"
                                      for k, v in values.items())
                    # escaped: rich would read "[train 3]" as a style tag and drop it
                    self.print_values(escape(f"[{phase} {step}] {shown}"))

    @staticmethod
    def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).cpu()

    def _grow(self, outs: list[LayerOutput], values: dict[str, list[torch.Tensor]]) -> None:
        """Distinct codes per layer after each training frame (the growth curve)."""
        if self.basis_metric is not None:
            running = values[self.basis_metric.name]
        else:
            running = self.basis.update(outs)
        self.growth.append(torch.stack([r.sum(1) for r in running], 1).float().cpu())

    # -- results -------------------------------------------------------------------------
    def growth_curve(self) -> torch.Tensor:
        """F×L: distinct codes in each layer after each training frame."""
        n = len(self.model.layers)
        return torch.cat(self.growth) if self.growth else torch.zeros(0, n)

    def summary(self) -> dict[str, Any]:
        """Per layer: activity, mean G, basis set; per phase: every metric per layer."""
        self.flush()
        out: dict[str, Any] = {"layers": []}
        sizes = self.basis.sizes()
        for ell, layer in enumerate(self.model.layers):
            row: dict[str, Any] = {"layer": ell + 1, "num_macs": layer.num_macs}
            for phase, st in self.stats.items():
                if st.frames:
                    row[f"{phase}_active_fraction"] = float(st.active[ell].mean()) / st.frames
                    count = float(st.g_count[ell].sum())
                    row[f"{phase}_mean_g"] = float(st.g_sum[ell].sum()) / count if count else None
            if ell < len(sizes):
                row["basis_set_mean"] = float(sizes[ell].float().mean())
                row["basis_set_max"] = int(sizes[ell].max())
            elif self.stats["train"].frames:
                row["basis_set_mean"], row["basis_set_max"] = 0.0, 0
            else:  # nothing learned in this run (evaluate): undefined, not a fake 0
                row["basis_set_mean"], row["basis_set_max"] = None, None
            out["layers"].append(row)
        # every configured metric (and its extra series), also those undefined in both
        # phases of this run, so the end-of-run table lists each one
        own = [m.name for m in self.metrics]
        names = [n for name in own
                 for n in [name, *(e for e in self._meta if e not in own and e.startswith(name))]]
        out["configured_metrics"] = list(dict.fromkeys([*names, *self._meta]))
        for phase, st in self.stats.items():
            out[phase] = {"frames": st.frames, "seconds": st.seconds,
                          "frames_per_second": st.frames / st.seconds if st.seconds else None,
                          "metrics": st.layer_means(), "model_metrics": st.model_means(),
                          "best": self._best(st)}
        return out

    def _best(self, st: PhaseStats) -> dict[str, dict[str, Any]]:
        """Per metric, avg(X) — the mean over layers of each layer's mean over frames and
        MACs — and its `best_value`: what runs are compared by (`reduction.is_better`)."""
        out: dict[str, dict[str, Any]] = {}
        for m in self.metrics:
            if m.name not in st.mac_sum:
                continue
            means = [float(s.sum()) / float(c.sum()) for s, c in
                     zip(st.mac_sum[m.name], st.mac_count[m.name], strict=True)
                     if float(c.sum()) > 0]
            out[m.name] = {"avg_by_layerwise_mean": sum(means) / len(means) if means else None,
                           "best_value": m.params.best_value}
        return out

    def training_state(self) -> dict[str, Any]:
        """What evaluating the saved model later needs: each metric's state, the plots' data."""
        self.flush()
        st = self.stats["train"]
        return {"metrics": {m.name: m.state_dict() for m in self.metrics},
                "basis_set_sizes": [s.cpu() for s in self.basis.sizes()],
                "growth": self.growth_curve(),
                "train_g_hist": [h.clone() for h in st.g_hist]}


def training_record_path(model_path: str | Path) -> Path:
    """The file beside a saved model (v3.pt → v3.training.pt) that keeps its metric state."""
    p = Path(model_path)
    return p.with_name(f"{p.stem}.training.pt")


def save_training_record(recorder: MetricRecorder, model_path: str | Path) -> Path:
    """Keep what evaluating the model later needs (the training memory, basis sets, plots'
    data) beside it; the model file itself is not touched."""
    path = training_record_path(model_path)
    save_atomic(path, recorder.training_state())
    return path


def load_training_record(model_path: str | Path) -> dict[str, Any] | None:
    """The record saved beside a model, or None when there is none (or it is unreadable)."""
    path = training_record_path(model_path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged record only costs the training-derived metrics
        return None
