"""The Code Selection Algorithm (spec §3): familiarity → expansivity → μ → one winner per CM.

All functions work on every MAC of a layer at once; the batch and MAC axes lead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MU_FORMS = ("floor", "paper", "compat")
COMPAT_EPSILON = 1e-6


@dataclass(frozen=True)
class CSAParams:
    """The CSA's knobs, in canonical meaning (compat: sparseypy's meaning of the same keys)."""

    num_cms: int
    num_neurons: int
    sigmoid_lambda: float = 28.0
    sigmoid_phi: float = 0.5
    sigmoid_chi: float = 100.0
    min_familiarity: float = 0.1
    familiarity_exponent: float = 2.0
    mu_form: str = "floor"
    mu_floor: float = 1.0
    v_hi: float | None = 0.999
    v_lo: float = 0.0


def familiarity(
    u: torch.Tensor, n: torch.Tensor, p: CSAParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """V = u / n (0 where n = 0), shaped B×M×Q×K, and G = mean over CMs of max_k V."""
    denom = n.clamp(min=1.0).unsqueeze(-1)
    v = torch.where(n.unsqueeze(-1) > 0, u / denom, torch.zeros_like(u))
    v = v.reshape(*u.shape[:-1], p.num_cms, p.num_neurons)
    g = v.amax(dim=-1).mean(dim=-1)
    return v, g


def expansivity(g: torch.Tensor, p: CSAParams) -> torch.Tensor:
    """η = 1 + χ·K·ĝ^γ with ĝ the familiarity above the floor G⁻ (canonical, [SC])."""
    g_hat = ((g - p.min_familiarity) / (1.0 - p.min_familiarity)).clamp(min=0.0)
    return 1.0 + p.sigmoid_chi * p.num_neurons * g_hat.pow(p.familiarity_exponent)


def selection_weights(v: torch.Tensor, g: torch.Tensor, p: CSAParams) -> torch.Tensor:
    """μ per cell (B×M×Q×K) in the configured form; the contrast grows with G."""
    if p.mu_form == "compat":
        # sparseypy's form (B1): η has no floor, so it cancels in ρ; kept only for comparison.
        eta_sp = (p.sigmoid_chi * (g - p.min_familiarity) / (1.0 - p.min_familiarity)).clamp(min=0)
        return eta_sp[..., None, None] / (1 + torch.exp(-p.sigmoid_lambda * v + p.sigmoid_phi)) \
            + COMPAT_EPSILON
    eta = expansivity(g, p)[..., None, None]
    sig = torch.sigmoid(p.sigmoid_lambda * (v - p.sigmoid_phi))
    if p.mu_form == "paper":
        mu = 1.0 + (eta - 1.0) * sig
        top = eta.expand_as(mu)
    elif p.mu_form == "floor":
        mu = torch.clamp(eta * sig, min=p.mu_floor)
        top = eta.clamp(min=p.mu_floor).expand_as(mu)
    else:
        raise ValueError(f"mu_form must be one of {MU_FORMS}, got '{p.mu_form}'")
    if p.v_hi is not None:
        mu = torch.where(v >= p.v_hi, top, mu)
    if p.v_lo > 0:
        mu = torch.where(v < p.v_lo, torch.full_like(mu, p.mu_floor), mu)
    return mu


def sample_winners(rho: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One winner per CM by inverse CDF with a single uniform draw per CM (rows: MAC, CM)."""
    cdf = torch.cumsum(rho, dim=-1)
    draw = torch.rand(rho.shape[:-1], generator=generator, device=rho.device, dtype=rho.dtype)
    winners = (cdf < draw.unsqueeze(-1) * cdf[..., -1:]).sum(dim=-1)
    return winners.clamp(max=rho.shape[-1] - 1)


def argmax_winners(v: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Recognition: argmax_k V with ties broken uniformly at random (not lowest index, B4)."""
    vmax = v.amax(dim=-1, keepdim=True)
    keys = torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype)
    return torch.where(v == vmax, keys, torch.full_like(keys, -1.0)).argmax(dim=-1)


def select_codes(
    v_active: torch.Tensor, g_active: torch.Tensor, p: CSAParams, learning: bool,
    generator: torch.Generator,
) -> torch.Tensor:
    """Winners (n_active×Q) for the active MACs only, in row-major (frame, MAC, CM) draw order."""
    if not learning:
        return argmax_winners(v_active, generator)
    mu = selection_weights(v_active, g_active, p)
    rho = mu / mu.sum(dim=-1, keepdim=True)
    return sample_winners(rho, generator)
