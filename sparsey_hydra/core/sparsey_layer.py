"""A layer of MACs: gather RF inputs, gate, run the CSA and learn — all MACs at once.

A MAC's input is not materialised as a dense 0/1 vector: every active lower MAC contributes
exactly one cell per CM, so the active inputs of all MACs are an M×(R·Q_lower) table of weight
rows, built from the lower layer's codes by one gather. Familiarity sums just those rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparsey_hydra.core.column_layout import (
    ColumnGroups,
    GatherBuffer,
    column_weights,
    group_macs,
)
from sparsey_hydra.core.csa import (
    CSAParams,
    argmax_one_hot,
    argmax_winners,
    familiarity,
    global_familiarity,
    sample_winners,
    selection_weights,
)
from sparsey_hydra.core.geometry import (
    LayerGeometry,
    autosize,
    grid_positions,
    receptive_fields,
)
from sparsey_hydra.core.learning_rule import PAD_ROW, HebbianRule, store_dtype
from sparsey_hydra.core.live_slots import bag_offsets, live_counts, live_inputs

GATE_TOLERANCE = 1e-9
#: recognition sums rows of W laid out over the whole lower layer (long contiguous rows, one
#: bag per frame) when that layout has fewer than this many weights per gathered weight of
#: the per-MAC gather (short rows, random reads) ...
DENSE_ADVANTAGE = 8
#: ... and that layout stays below this many weights
DENSE_MAX_WEIGHTS = 16 * 2**20
#: bfloat16 holds every integer up to 2^8 exactly, and its matmul accumulates in float32: a
#: binary W over at most this many active inputs gives exact u from a bfloat16 matmul
BF16_EXACT_SUM = 2**8
#: the code offset of an inactive MAC: any row index plus this is < 0, i.e. the padding row
INACTIVE = -(1 << 60)


class SparseyLayerParams(BaseModel):
    """Parameters of one Sparsey layer; names follow sparseypy, meanings are canonical (§8)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["sparsey"] = "sparsey"
    num_macs: int = Field(ge=1)
    grid_rows: int | None = Field(default=None, ge=1)
    grid_cols: int | None = Field(default=None, ge=1)
    layout: Literal["rect", "hex"] = "rect"
    num_cms_per_mac: int = Field(ge=1)
    num_neurons_per_cm: int = Field(ge=1)
    receptive_field_radius: float = Field(gt=0)
    activation_threshold_min: float = Field(default=0.1, ge=0, le=1)
    activation_threshold_max: float = Field(default=1.0, ge=0, le=1)
    sigmoid_lambda: float = Field(default=28.0, gt=0)
    sigmoid_phi: float = 0.5
    sigmoid_chi: float = Field(default=100.0, ge=0)
    min_familiarity: float = Field(default=0.1, ge=0, lt=1)
    familiarity_exponent: float = Field(default=2.0, gt=0)
    mu_form: Literal["floor", "paper", "compat"] = "floor"
    mu_floor: float = Field(default=1.0, gt=0)
    v_hi: float | None = Field(default=0.999, gt=0, le=1)
    v_lo: float = Field(default=0.0, ge=0, le=1)
    saturation_threshold: float = Field(default=1.0, gt=0, le=1)
    permanence_steps: int | None = Field(default=None, ge=1)
    permanence_convexity: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> SparseyLayerParams:
        if self.activation_threshold_min > self.activation_threshold_max:
            raise ValueError(
                f"activation_threshold_min ({self.activation_threshold_min}) must be <= "
                f"activation_threshold_max ({self.activation_threshold_max})"
            )
        if self.mu_form != "compat" and not 0 <= self.sigmoid_phi <= 1:
            raise ValueError(
                f"sigmoid_phi is the sigmoid's inflection in V units and must be in [0, 1] "
                f"(got {self.sigmoid_phi}); use mu_form=compat for sparseypy's additive offset"
            )
        if (self.grid_rows is None) != (self.grid_cols is None):
            raise ValueError("set both grid_rows and grid_cols, or neither (autosize)")
        if self.grid_rows and self.grid_rows * self.grid_cols < self.num_macs:
            raise ValueError(
                f"grid_rows×grid_cols = {self.grid_rows}×{self.grid_cols} cannot hold "
                f"num_macs = {self.num_macs}"
            )
        return self

    def csa(self) -> CSAParams:
        return CSAParams(
            num_cms=self.num_cms_per_mac, num_neurons=self.num_neurons_per_cm,
            sigmoid_lambda=self.sigmoid_lambda, sigmoid_phi=self.sigmoid_phi,
            sigmoid_chi=self.sigmoid_chi, min_familiarity=self.min_familiarity,
            familiarity_exponent=self.familiarity_exponent, mu_form=self.mu_form,
            mu_floor=self.mu_floor, v_hi=self.v_hi, v_lo=self.v_lo,
        )


@dataclass
class LayerOutput:
    """One layer's result for a batch of frames (inactive MACs: no code, G is NaN).

    `x` (B×M×N dense input) and `v` (B×M×Q×K) are optional: the Sparsey layer's learning loop
    leaves them out; `inputs` is its sparse form of x (B×M×J weight-store rows, 0 = none).
    `y` may be given as None with `num_neurons` (K): it is then built from the codes when
    first read, so a caller that reads only codes, G or V never pays for it.
    """

    active: torch.Tensor  # B×M bool
    codes: torch.Tensor  # B×M×Q winner index per CM, -1 where inactive
    y: torch.Tensor | None  # B×M×QK binary output (float32)
    g: torch.Tensor  # B×M global familiarity (NaN where inactive)
    x: torch.Tensor | None = None
    v: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    num_neurons: int | None = None  # K, cells per CM

    def __post_init__(self) -> None:
        stored = self.__dict__.get("_y")
        if stored is None and self.num_neurons is None:
            raise ValueError("LayerOutput needs y or num_neurons (to build y from the codes)")
        if self.num_neurons is None:
            self.num_neurons = int(stored.shape[-1]) // max(int(self.codes.shape[-1]), 1)

    def _get_y(self) -> torch.Tensor:
        y = self.__dict__.get("_y")
        if y is None:
            y = self.__dict__["_y"] = one_hot_codes(self.codes, self.num_neurons)
        return y

    def _set_y(self, value: torch.Tensor | None) -> None:
        self.__dict__["_y"] = value

    @classmethod
    def cat(cls, parts: Sequence[LayerOutput]) -> LayerOutput:
        """Consecutive blocks of frames as one (fields absent from any block are dropped)."""
        if len(parts) == 1:
            return parts[0]
        values = {}
        for f in fields(cls):
            items = [p.__dict__.get("_y") if f.name == "y" else getattr(p, f.name)
                     for p in parts]
            values[f.name] = None if any(i is None for i in items) else (
                items[0] if f.name == "num_neurons" else torch.cat(items))
        return cls(**values)


# y is a property over the stored tensor (set after the dataclass is made, so that its
# __init__ takes y as a plain argument)
LayerOutput.y = property(LayerOutput._get_y, LayerOutput._set_y)  # type: ignore[assignment]


def code_offsets(lower_y: torch.Tensor, num_cms: int, num_neurons: int) -> torch.Tensor:
    """B×(M+1)×Q table of q·K + winner per lower MAC and CM (INACTIVE if none; last row pad)."""
    b, m, _ = lower_y.shape
    yv = lower_y.view(b, m, num_cms, num_neurons)
    cm_offset = torch.arange(num_cms, device=lower_y.device) * num_neurons
    off = torch.where(yv.amax(dim=-1) > 0, yv.argmax(dim=-1) + cm_offset, INACTIVE)
    return torch.cat([off, off.new_full((b, 1, num_cms), INACTIVE)], dim=1)


def place(draws: torch.Tensor, active: torch.Tensor, per: int) -> torch.Tensor:
    """Deal consecutive draws to the active MACs in (frame, MAC) order: B×M×per."""
    rank = active.reshape(-1).cumsum(0) - 1
    pos = rank.unsqueeze(-1) * per + torch.arange(per, device=active.device)
    return draws[pos.clamp_(0, max(draws.numel() - 1, 0))].view(*active.shape, per) \
        if draws.numel() else draws.new_zeros(*active.shape, per)


class SparseyLayer:
    """M MACs of Q CMs × K cells over Euclidean RFs of the layer below."""

    def __init__(self, params: SparseyLayerParams, lower: LayerGeometry,
                 device: torch.device | str = "cpu") -> None:
        self.params = params
        self.device = torch.device(device)
        self.num_macs = params.num_macs
        self.num_cms = params.num_cms_per_mac
        self.num_neurons = params.num_neurons_per_cm
        rows, cols = (params.grid_rows, params.grid_cols) if params.grid_rows else autosize(
            params.num_macs)
        self.positions = grid_positions(params.num_macs, rows, cols, params.layout)
        rf_index, rf_size = receptive_fields(
            self.positions, lower.positions, params.receptive_field_radius)
        self.rf_index = rf_index.to(self.device)
        self.rf_flat = self.rf_index.reshape(-1)
        self.rf_size = rf_size.to(self.device)
        incidence = torch.zeros(lower.num_macs + 1, params.num_macs)
        incidence[rf_index, torch.arange(params.num_macs).unsqueeze(1)] = 1.0
        self.rf_matrix = incidence[:-1].to(self.device)  # M_low×M: 1 where j ∈ RF(m)
        self.lower_macs = lower.num_macs
        self.lower_cms = lower.num_cms
        self.lower_neurons = lower.num_neurons
        self.lower_cells = lower.cells_per_mac
        r_max = rf_index.shape[1]
        self.input_size = r_max * lower.cells_per_mac
        self.fan_in = r_max * lower.num_cms  # J: active-input slots per MAC
        cells = self.num_cms * self.num_neurons
        # base[m, r, q] = the store row of MAC m's input from its r-th RF MAC's first cell; the
        # lower code table adds q·K + k (or INACTIVE, which sends the slot to the pad row).
        m_i = torch.arange(self.num_macs).view(-1, 1, 1) * self.input_size
        r_i = torch.arange(r_max).view(1, -1, 1) * lower.cells_per_mac
        q_i = torch.zeros(1, 1, lower.num_cms, dtype=torch.long)
        self.base = (1 + m_i + r_i + q_i).reshape(self.num_macs, self.fan_in).to(self.device)
        self.rf_base = self.base.view(self.num_macs, r_max, -1)[..., 0].contiguous()  # M×R
        self.rule = HebbianRule(self.num_macs, self.input_size, cells,
                                params.saturation_threshold, params.permanence_steps,
                                params.permanence_convexity, self.device,
                                store_dtype(params.permanence_steps, self.fan_in, self.device))
        self.csa_params = params.csa()
        self.cm_offset = torch.arange(self.num_cms, device=self.device) * self.num_neurons
        scale = (self.rf_size * self.lower_cms).to(torch.float32)
        self._lo = params.activation_threshold_min * scale - GATE_TOLERANCE
        self._hi = params.activation_threshold_max * scale + GATE_TOLERANCE

    @property
    def weights(self) -> torch.Tensor:
        return self.rule.weights

    def geometry(self) -> LayerGeometry:
        return LayerGeometry(self.positions, self.num_macs, self.num_cms, self.num_neurons)

    # -- the pieces, shared by learning and recognition ----------------------------------
    def input_rows(self, lower_off: torch.Tensor) -> torch.Tensor:
        """…×M×J store rows of the active inputs (0 = none) from a …×(M_low+1)×Q_low table."""
        sel = lower_off.index_select(-2, self.rf_flat)
        return (self.base + sel.view(*lower_off.shape[:-2], self.num_macs, self.fan_in)).clamp_(
            min=PAD_ROW)

    def gate(self, n: torch.Tensor) -> torch.Tensor:
        """a = [n ≥ 1] ∧ [θ_min ≤ n/(R·Q_lower) ≤ θ_max] from the active-input count n."""
        return (n >= 1) & (n >= self._lo) & (n <= self._hi)

    def activity(self, lower_active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(active B×M, n B×M) from the lower layer's activity alone (codes do not matter).

        n = Q_lower · (active lower MACs in the RF): one small matmul with the RF incidence
        matrix (exact: integer sums far below 2²⁴).
        """
        n = (lower_active.to(torch.float32) @ self.rf_matrix) * float(self.lower_cms)
        return self.gate(n), n

    def summed_input(self, rows: torch.Tensor) -> torch.Tensor:
        """u = Σ over each MAC's active-input rows of W (…×M×QK), without a dense matmul.

        Fixed-size bags with no padding_idx take embedding_bag's fast path; the pad row is
        all zeros, so it adds nothing.
        """
        u = F.embedding_bag(rows.reshape(-1, self.fan_in), self.rule.store, mode="sum")
        return u.view(*rows.shape[:-1], -1)

    def uses_dense_recognition(self) -> bool:
        """Whether recognition is cheaper over W's dense layout than as a per-MAC gather."""
        cells = self.num_cms * self.num_neurons
        dense = self.lower_macs * self.lower_cells * self.num_macs * cells
        return dense <= DENSE_MAX_WEIGHTS and \
            dense <= DENSE_ADVANTAGE * self.num_macs * self.fan_in * cells

    def _cached(self, name: str, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A layout of W built once per version of W."""
        cached = self.__dict__.get(name)
        if cached is None or cached[0] != self.rule.version:
            cached = (self.rule.version, build())
            self.__dict__[name] = cached
        return cached[1]

    def dense_weights(self) -> torch.Tensor:
        """W laid out as (M_low·C_low)×(M·QK) in the store's dtype: row (j, c_low) holds MAC
        m's weights from lower cell c_low of MAC j where j ∈ RF(m), zeros elsewhere. Cached
        until W changes."""
        return self._cached("_dense", self._dense_layout)

    def _dense_layout(self) -> torch.Tensor:
        cells = self.num_cms * self.num_neurons
        r_max = self.rf_index.shape[1]
        dense = torch.zeros(self.lower_macs + 1, self.lower_cells, self.num_macs, cells,
                            device=self.device, dtype=self.rule.dtype)
        macs = torch.arange(self.num_macs, device=self.device).unsqueeze(1)
        dense[self.rf_index, :, macs, :] = self.weights.view(
            self.num_macs, r_max, self.lower_cells, cells)
        return dense[:-1].reshape(self.lower_macs * self.lower_cells, self.num_macs * cells)

    def column_groups(self) -> ColumnGroups:
        """How recognition frames last blocks W (from the geometry alone; computed once)."""
        groups = self.__dict__.get("_groups")
        if groups is None:
            groups = group_macs(self.rf_index.cpu(), self.lower_macs, self.lower_cells,
                                self.num_cms * self.num_neurons)
            groups = replace(groups, slot=groups.slot.to(self.device), sources=None
                             if groups.sources is None else groups.sources.to(self.device))
            self.__dict__["_groups"] = groups
        return groups

    def column_blocks(self) -> torch.Tensor:
        """W as the groups' G×(g·QK)×(U·C_low) bfloat16 blocks, cached until W changes."""
        return self._cached("_blocks", lambda: column_weights(
            self.column_groups(), self.weights, self.rf_index, self.lower_cells,
            self.num_cms * self.num_neurons))

    def uses_column_recognition(self) -> bool:
        """Whether recognition can be exact bfloat16 matmuls, frames last: W binary (the
        float16 store), u ≤ J ≤ 2^8, and the blocks not too large."""
        exact = self.rule.dtype == torch.float16 and self.fan_in <= BF16_EXACT_SUM \
            and 2 * self.num_neurons <= BF16_EXACT_SUM
        if not exact or self.device.type not in ("cpu", "cuda"):
            return False
        groups = self.column_groups()
        size = groups.groups * groups.size * groups.width * self.lower_cells
        return size * self.num_cms * self.num_neurons <= DENSE_MAX_WEIGHTS

    def dense_input_sum(self, lower_y: torch.Tensor) -> torch.Tensor:
        """u (B×M×QK) as the sum of the dense layout's rows at each frame's active lower cells:
        one bag per frame. (Same integer sums as Y_lower @ W_dense, 2–3× faster than that
        matmul on MNIST: only the ~20 % active rows are read, and in float16.)"""
        flat = lower_y.reshape(lower_y.shape[0], -1)
        cell = flat.nonzero()[:, 1]  # row-major: frame after frame
        starts = bag_offsets(flat.count_nonzero(dim=1)).long()
        u = F.embedding_bag(cell, self.dense_weights(), starts, mode="sum")
        return u.view(lower_y.shape[0], self.num_macs, -1)

    def dense_input(self, out: LayerOutput) -> torch.Tensor:
        """The B×M×N binary input x of an output (for tests and inspection)."""
        rows = out.inputs
        b = rows.shape[0]
        x = torch.zeros(b, self.num_macs, self.input_size + 1, device=rows.device)
        local = rows - 1 - torch.arange(self.num_macs, device=rows.device).view(1, -1, 1) \
            * self.input_size
        local = torch.where(rows == PAD_ROW, self.input_size, local)
        x.scatter_(2, local, 1.0)
        return x[..., :-1]

    # -- recognition and reference learning (batched over frames) -----------------------
    def live_input_sum(self, lower_codes: torch.Tensor | None, lower_active: torch.Tensor,
                       active: torch.Tensor) -> torch.Tensor:
        """u (B×M×QK) summed over the live slots only: active MACs × active RF MACs.

        lower_codes: B×M_low×Q_low winner per CM of the lower layer (None for the pixels).
        One bag per (frame, MAC) in `embedding_bag`; an inactive MAC's bag is empty (u = 0).
        """
        frames = active.shape[0]
        live = live_inputs(self.rf_index, active, lower_active)
        counts = live_counts(live) * self.lower_cms  # slots: each live lower MAC gives Q_low
        entry = live.view(-1).nonzero().squeeze(1)  # (frame, MAC, r) in order
        per_frame = self.rf_index.numel()
        mr = entry.remainder(per_frame)
        rows = self.rf_base.view(-1).index_select(0, mr)
        if lower_codes is not None:
            # the lower MAC's cell q·K_low + k_q for each of its CMs q (offsets added on the
            # small code table, and the rows added in place: broadcast adds over a last
            # dimension of Q elements are several times slower out of place)
            lower = torch.div(entry, per_frame, rounding_mode="floor") * self.lower_macs \
                + self.rf_flat.index_select(0, mr)
            lower_cells = (lower_codes + torch.arange(self.lower_cms, device=rows.device)
                           * self.lower_neurons).reshape(-1, self.lower_cms)
            rows = lower_cells.index_select(0, lower).add_(rows.unsqueeze(1)).view(-1)
        u = F.embedding_bag(rows, self.rule.store, bag_offsets(counts).view(-1).long(),
                            mode="sum")
        return u.view(frames, self.num_macs, -1)

    def summed_columns(self, lower: torch.Tensor, buffer: GatherBuffer | None = None
                       ) -> torch.Tensor:
        """u, (M·QK)×b bfloat16, from the lower output (M_low·C_low)×b: each group's blocks
        times the outputs of the lower MACs it reads (exact: 0/1 products summed in float32,
        u ≤ 2^8). The gathered outputs go into `buffer` when given."""
        groups, blocks = self.column_groups(), self.column_blocks()
        if groups.sources is None:
            return blocks[0] @ lower
        b = lower.shape[-1]
        rows = groups.sources.view(-1)
        x = (buffer or GatherBuffer()).take(rows.numel() * self.lower_cells * b, lower)
        torch.index_select(lower.view(self.lower_macs, -1), 0, rows,
                           out=x.view(rows.numel(), -1))
        u = torch.bmm(blocks, x.view(groups.groups, -1, b)).view(-1, b)
        return u[:self.num_macs * self.num_cms * self.num_neurons]

    def column_output(self, frames: int) -> LayerOutput:
        """Empty outputs for `recognize_columns`: frames-first views of frames-last tensors."""
        q, k, m, dev = self.num_cms, self.num_neurons, self.num_macs, self.device
        return LayerOutput(
            active=torch.empty(frames, m, dtype=torch.bool, device=dev),
            codes=torch.empty(m, q, frames, dtype=torch.long, device=dev).permute(2, 0, 1),
            y=None, num_neurons=k,
            g=torch.empty(m, frames, device=dev).t(),
            v=torch.empty(m, q, k, frames, device=dev).permute(3, 0, 1, 2))

    def recognize_columns(self, lower: torch.Tensor, active: torch.Tensor, n: torch.Tensor,
                          keys: torch.Tensor, out: LayerOutput, first: int,
                          buffer: GatherBuffer | None = None) -> torch.Tensor:
        """Recognise a block of b frames held frames last, into frames first..first+b of `out`
        (from `column_output`).

        lower: the lower layer's output (M_low·C_low)×b, bfloat16; active, n: b×M from
        `activity()`; keys: b×M×Q tie-break uniforms. u for every MAC of every frame comes
        from one batched bfloat16 matmul (`summed_columns`), and with the frames as the
        innermost axis every pass of the CSA over the cells runs along long contiguous rows
        (with K innermost, rows of 4–32 elements). Returns this layer's output (M·QK)×b,
        bfloat16, for the layer above. `buffer` holds the gathered inputs.
        """
        b = lower.shape[-1]
        q, k, m = self.num_cms, self.num_neurons, self.num_macs
        frames = slice(first, first + b)
        active_t = active.t().contiguous()
        div = torch.where(active_t, n.t().clamp(min=1.0), float("inf"))  # inactive: V = 0
        v = out.v[frames].permute(1, 2, 3, 0)
        u = self.summed_columns(lower, buffer).view(m, q, k, b)
        torch.div(u, div.view(m, 1, 1, b), out=v)
        v_max = v.amax(dim=2, keepdim=True)
        g = global_familiarity(v_max.squeeze(2), q, cm_dim=1)
        out.g[frames] = torch.where(active_t, g, float("nan")).t()
        winners, code = argmax_one_hot(v, keys.permute(1, 2, 0).contiguous(),
                                       active_t.unsqueeze(1), v_max)
        out.codes[frames] = torch.where(active_t.unsqueeze(1), winners, -1.0).permute(2, 0, 1)
        out.active[frames] = active
        return code.view(m * q * k, b)

    def forward(self, lower_y: torch.Tensor, learning: bool, generator: torch.Generator,
                draws: torch.Tensor | None = None,
                activity: tuple[torch.Tensor, torch.Tensor] | None = None,
                lower: tuple[torch.Tensor | None, torch.Tensor] | None = None) -> LayerOutput:
        """Gate, CSA and code for every MAC of a batch (weights are not changed here).

        Draws come from `draws` (B×M×Q uniforms: the sample when learning, the tie-break when
        recognising) or else from `generator`, Q per active MAC in (frame, MAC) order.
        `activity` = (active, n) when already known from `activity()`; with it, `lower` =
        (the lower layer's codes or None for pixels, its activity) lets recognition sum only
        the live slots.
        """
        rows = None
        dense = not learning and activity is not None and self.uses_dense_recognition()
        if dense:
            # The same weights summed in another order: equal to the gather for binary W
            # (integer sums); with decay, float rounding may differ in the last bit.
            active, n = activity
            u = self.dense_input_sum(lower_y)
        elif not learning and activity is not None and lower is not None:
            active, n = activity
            u = self.live_input_sum(lower[0], lower[1], active)
        else:
            off = code_offsets(lower_y, self.lower_cms, self.lower_neurons)
            rows = self.input_rows(off)
            if activity is None:
                n = (rows > PAD_ROW).sum(dim=-1, dtype=torch.float32)
                active = self.gate(n)
            else:
                active, n = activity
            u = self.summed_input(rows)
        v, g = familiarity(u, n.clamp(min=1.0), self.csa_params)
        q, k = self.num_cms, self.num_neurons
        if draws is None:
            per = q
            count = int(active.sum()) * per
            draws = place(torch.rand(count, generator=generator).to(self.device), active, per)
        if learning:
            winners = sample_winners(selection_weights(v, g, self.csa_params),
                                     draws.view(*active.shape, q))
        else:
            winners = argmax_winners(v, draws.view(*active.shape, q))
        codes = torch.where(active.unsqueeze(-1), winners, -1)
        # an inactive MAC has no V (whichever way u was summed, it is reported as 0)
        v.masked_fill_(~active[..., None, None], 0.0)  # v is fresh (u / n)
        y = one_hot_codes(codes, k)
        g = torch.where(active, g, torch.full_like(g, float("nan")))
        return LayerOutput(active=active, codes=codes, y=y, g=g, v=v, inputs=rows)

    def learn(self, out: LayerOutput, index: int = 0) -> None:
        """Hebbian update for frame `index` of `out` (its inputs, activity and code)."""
        cells = out.codes[index].clamp(min=0) + self.cm_offset
        self.rule.update(out.inputs[index], ~out.active[index].unsqueeze(-1), cells)

    # -- the learning loop's step: one frame, fused ---------------------------------------
    def learn_step(self, lower_off: torch.Tensor, n_safe: torch.Tensor,
                   inactive: torch.Tensor, uniform: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and learn one frame; returns (winner cells M×Q, G per MAC).

        The same functions as `forward` + `learn`, minus what only a batch needs: the
        activity and counts were computed for the whole chunk from the input alone.
        """
        rows = self.input_rows(lower_off)
        v, g = familiarity(self.summed_input(rows), n_safe, self.csa_params)
        winners = sample_winners(selection_weights(v, g, self.csa_params), uniform)
        cells = winners + self.cm_offset
        self.rule.update(rows, inactive, cells)
        return cells, g

    def state(self) -> dict[str, torch.Tensor]:
        return self.rule.state()

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.rule.load_state(state)


def one_hot_codes(codes: torch.Tensor, num_neurons: int) -> torch.Tensor:
    """B×M×Q codes (−1 = inactive) → B×M×QK binary output."""
    b, m, q = codes.shape
    y = torch.zeros(b, m, q, num_neurons, device=codes.device)
    y.scatter_(3, codes.clamp(min=0).unsqueeze(-1), 1.0)
    return y.view(b, m, q * num_neurons) * (codes[..., :1] >= 0)
