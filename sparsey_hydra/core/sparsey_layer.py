"""A layer of MACs: gather RF inputs, gate, run the CSA and learn — all MACs at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparsey_hydra.core.csa import CSAParams, familiarity, select_codes
from sparsey_hydra.core.geometry import (
    LayerGeometry,
    autosize,
    grid_positions,
    receptive_fields,
)
from sparsey_hydra.core.learning_rule import HebbianRule

GATE_TOLERANCE = 1e-9


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
    """One layer's result for a batch of frames (inactive MACs: no code, G is NaN)."""

    x: torch.Tensor  # B×M×N input (binary, float32)
    active: torch.Tensor  # B×M bool
    codes: torch.Tensor  # B×M×Q winner index per CM, -1 where inactive
    y: torch.Tensor  # B×M×QK binary output
    v: torch.Tensor  # B×M×Q×K normalised familiarity
    g: torch.Tensor  # B×M global familiarity (NaN where inactive)


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
        self.rf_size = rf_size.to(self.device)
        self.lower_cms = lower.num_cms
        self.lower_cells = lower.cells_per_mac
        self.input_size = rf_index.shape[1] * lower.cells_per_mac
        cells = self.num_cms * self.num_neurons
        weights = torch.zeros(self.num_macs, self.input_size, cells, device=self.device)
        self.rule = HebbianRule(weights, params.saturation_threshold,
                                params.permanence_steps, params.permanence_convexity)
        self.csa_params = params.csa()
        self._cell_offset = torch.arange(self.num_cms, device=self.device) * self.num_neurons

    @property
    def weights(self) -> torch.Tensor:
        return self.rule.weights

    def geometry(self) -> LayerGeometry:
        return LayerGeometry(self.positions, self.num_macs, self.num_cms, self.num_neurons)

    def gather(self, lower_y: torch.Tensor) -> torch.Tensor:
        """Concatenate each MAC's RF outputs (padding reads an all-zero row): B×M×N."""
        b = lower_y.shape[0]
        padded = torch.cat([lower_y, lower_y.new_zeros(b, 1, lower_y.shape[2])], dim=1)
        return padded[:, self.rf_index].reshape(b, self.num_macs, self.input_size)

    def gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a = [n ≥ 1] ∧ [θ_min ≤ n/(R·Q_lower) ≤ θ_max]; returns (active, n)."""
        n = x.sum(dim=-1)
        scale = (self.rf_size * self.lower_cms).to(x.dtype)
        lo = self.params.activation_threshold_min * scale - GATE_TOLERANCE
        hi = self.params.activation_threshold_max * scale + GATE_TOLERANCE
        return (n >= 1) & (n >= lo) & (n <= hi), n

    def forward(self, lower_y: torch.Tensor, learning: bool,
                generator: torch.Generator) -> LayerOutput:
        """Gate, CSA and code for every MAC of a batch (weights are not changed here)."""
        x = self.gather(lower_y)
        active, n = self.gate(x)
        u = torch.bmm(x.transpose(0, 1), self.weights).transpose(0, 1)
        v, g = familiarity(u, n, self.csa_params)
        b = x.shape[0]
        codes = torch.full((b, self.num_macs, self.num_cms), -1, dtype=torch.long,
                           device=self.device)
        if bool(active.any()):
            winners = select_codes(v[active], g[active], self.csa_params, learning, generator)
            codes[active] = winners
        y = torch.zeros(b, self.num_macs, self.num_cms, self.num_neurons, device=self.device)
        y.scatter_(3, codes.clamp(min=0).unsqueeze(-1), 1.0)
        y = y.reshape(b, self.num_macs, -1) * active.unsqueeze(-1)
        g = torch.where(active, g, torch.full_like(g, float("nan")))
        return LayerOutput(x=x, active=active, codes=codes, y=y, v=v, g=g)

    def learn(self, out: LayerOutput, index: int = 0) -> None:
        """Hebbian update for frame `index` of `out` (its x, activity and code)."""
        cells = out.codes[index].clamp(min=0) + self._cell_offset
        self.rule.update(out.x[index], out.active[index], cells)

    def state(self) -> dict[str, torch.Tensor]:
        st = {"weights": self.rule.weights, "frozen": self.rule.frozen}
        if self.rule.age is not None:
            st["age"] = self.rule.age
        return st

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.rule.weights.copy_(state["weights"])
        self.rule.frozen.copy_(state["frozen"])
        if self.rule.age is not None:
            self.rule.age.copy_(state["age"])
