"""Layer `example_wta`: a winner-take-all baseline with the Sparsey layer interface.

Same MAC grid, receptive fields, activation gate and binary Hebbian weights as Sparsey, but
each CM simply picks its most strongly driven cell (random tie-break). Without the CSA's
familiarity-contingent noise, novel inputs do not get new codes on purpose — comparing it with
`sparsey` shows what the CSA adds.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sparsey_hydra.core.geometry import (
    LayerGeometry,
    autosize,
    grid_positions,
    receptive_fields,
)
from sparsey_hydra.core.sparsey_layer import LayerOutput


class WTALayerParams(BaseModel):
    """Parameters of one `example_wta` layer (the names match the `sparsey` layer's)."""

    model_config = ConfigDict(extra="forbid")

    # A layer's params carry their own `name`: the network builder reads it back.
    name: Literal["example_wta"] = "example_wta"
    num_macs: int = Field(ge=1)
    num_cms_per_mac: int = Field(ge=1)
    num_neurons_per_cm: int = Field(ge=1)
    receptive_field_radius: float = Field(gt=0)
    activation_threshold_min: float = Field(default=0.1, ge=0, le=1)
    activation_threshold_max: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> WTALayerParams:
        if self.activation_threshold_min > self.activation_threshold_max:
            raise ValueError("activation_threshold_min must be <= activation_threshold_max")
        return self


class WTALayer:
    """M MACs of Q CMs × K cells; each CM's winner is its cell with the largest input sum."""

    def __init__(self, params: WTALayerParams, lower: LayerGeometry,
                 device: torch.device | str = "cpu") -> None:
        self.params = params
        self.device = torch.device(device)
        self.num_macs = params.num_macs
        self.num_cms = params.num_cms_per_mac
        self.num_neurons = params.num_neurons_per_cm
        self.positions = grid_positions(params.num_macs, *autosize(params.num_macs))
        # ValueError here (an empty receptive field) becomes a one-line config error.
        rf_index, rf_size = receptive_fields(self.positions, lower.positions,
                                             params.receptive_field_radius)
        self.rf_index = rf_index.to(self.device)
        self.rf_size = rf_size.to(self.device)
        self.lower_cms = lower.num_cms
        self.input_size = rf_index.shape[1] * lower.cells_per_mac
        self.weights = torch.zeros(self.num_macs, self.input_size,
                                   self.num_cms * self.num_neurons, device=self.device)

    def geometry(self) -> LayerGeometry:
        return LayerGeometry(self.positions, self.num_macs, self.num_cms, self.num_neurons)

    def forward(self, lower_y: torch.Tensor, learning: bool,
                generator: torch.Generator) -> LayerOutput:
        """Gate, then argmax per CM; weights are not changed here (see `learn`)."""
        b = lower_y.shape[0]
        padded = torch.cat([lower_y, lower_y.new_zeros(b, 1, lower_y.shape[2])], dim=1)
        x = padded[:, self.rf_index].reshape(b, self.num_macs, self.input_size)
        n = x.sum(-1)
        scale = (self.rf_size * self.lower_cms).to(x.dtype)
        active = ((n >= 1) & (n >= self.params.activation_threshold_min * scale - 1e-9)
                  & (n <= self.params.activation_threshold_max * scale + 1e-9))
        u = torch.bmm(x.transpose(0, 1), self.weights).transpose(0, 1)
        v = (u / n.clamp(min=1).unsqueeze(-1)).reshape(b, self.num_macs, self.num_cms,
                                                       self.num_neurons)
        best = v.max(-1, keepdim=True).values
        # Random tie-break among the maximal cells, drawn from the model's seeded generator.
        noise = torch.rand(v.shape, generator=generator, device=generator.device).to(v.device)
        codes = torch.where(v == best, noise + 1.0, noise.new_zeros(())).argmax(-1)
        codes = torch.where(active.unsqueeze(-1), codes, torch.full_like(codes, -1))
        y = torch.zeros_like(v).scatter_(3, codes.clamp(min=0).unsqueeze(-1), 1.0)
        y = y.reshape(b, self.num_macs, -1) * active.unsqueeze(-1)
        g = best.squeeze(-1).mean(-1)
        g = torch.where(active, g, torch.full_like(g, float("nan")))
        return LayerOutput(x=x, active=active, codes=codes, y=y, v=v, g=g)

    def learn(self, out: LayerOutput, index: int = 0) -> None:
        """Binary Hebbian update for frame `index`: active inputs → the winning cells."""
        x, y = out.x[index], out.y[index]
        self.weights = torch.maximum(self.weights, x.unsqueeze(-1) * y.unsqueeze(1))

    def state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.weights.copy_(state["weights"])
