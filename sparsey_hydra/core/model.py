"""A Sparsey model: a stack of layers over a binary image, one seeded generator, save/load."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from sparsey_hydra.core.geometry import LayerGeometry, input_geometry
from sparsey_hydra.core.sparsey_layer import LayerOutput
from sparsey_hydra.errors import SparseyConfigError

FORMAT_VERSION = 1


class NonBinaryInputError(SparseyConfigError):
    """Sparsey needs binary input (§1); the fix is a `binarize` transform."""


class Layer(Protocol):
    """What the model needs of a layer (built-in or from a plugin)."""

    num_macs: int

    def geometry(self) -> LayerGeometry: ...
    def forward(self, lower_y: torch.Tensor, learning: bool,
                generator: torch.Generator) -> LayerOutput: ...
    def learn(self, out: LayerOutput, index: int = 0) -> None: ...
    def state(self) -> dict[str, torch.Tensor]: ...
    def load_state(self, state: dict[str, torch.Tensor]) -> None: ...


LayerFactory = Callable[[LayerGeometry], Layer]


class SparseyModel:
    """Layers run bottom-up; learning is strictly sequential, one frame at a time."""

    def __init__(self, input_shape: tuple[int, int], layer_factories: Sequence[LayerFactory],
                 seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.device = torch.device(device)
        lower = input_geometry(*self.input_shape)
        self.layers: list[Layer] = []
        for make in layer_factories:
            layer = make(lower)
            self.layers.append(layer)
            lower = layer.geometry()
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.frames_learned = 0

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        """B×H×W binary images → the input layer's output B×(H·W)×1 (row-major)."""
        if images.dim() == 2:
            images = images.unsqueeze(0)
        if tuple(images.shape[-2:]) != self.input_shape:
            raise SparseyConfigError(
                f"input is {tuple(images.shape[-2:])} but the model was built for "
                f"{self.input_shape}; preprocess to the same size (resize transform)"
            )
        images = images.to(self.device, torch.float32)
        if not bool(((images == 0) | (images == 1)).all()):
            raise NonBinaryInputError(
                "input is not binary (values other than 0 and 1); add a `binarize` transform "
                "to preprocessing.transforms, e.g. {name: binarize, threshold: 0.5}"
            )
        return images.reshape(images.shape[0], -1, 1)

    def forward(self, images: torch.Tensor, learning: bool = False) -> list[LayerOutput]:
        """All layers on a batch, without changing weights; layer ℓ+1 reads Y_ℓ."""
        y = self._input(images)
        outs = []
        for layer in self.layers:
            out = layer.forward(y, learning, self.generator)
            outs.append(out)
            y = out.y
        return outs

    def learn_frame(self, image: torch.Tensor,
                    on_forward: Callable[[list[LayerOutput]], None] | None = None
                    ) -> list[LayerOutput]:
        """One learning frame: forward → `on_forward` (metrics) → weight update → clock tick."""
        outs = self.forward(image, learning=True)
        if on_forward is not None:
            on_forward(outs)
        for layer, out in zip(self.layers, outs, strict=True):
            layer.learn(out)
        self.frames_learned += 1
        return outs

    def learn_batch(self, images: torch.Tensor,
                    on_forward: Callable[[list[LayerOutput]], None] | None = None) -> None:
        """A loader batch is learned item by item, so frame t sees frames < t (no averaging)."""
        for i in range(images.shape[0]):
            self.learn_frame(images[i:i + 1], on_forward)

    @torch.no_grad()
    def recognize(self, images: torch.Tensor) -> list[LayerOutput]:
        """Recognition mode (argmax, random tie-break); never changes the model's weights."""
        return self.forward(images, learning=False)

    # -- persistence ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "input_shape": list(self.input_shape),
            "seed": self.seed,
            "frames_learned": self.frames_learned,
            "generator": self.generator.get_state(),
            "layers": [{k: v.detach().cpu() for k, v in layer.state().items()}
                       for layer in self.layers],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if len(state["layers"]) != len(self.layers):
            raise ValueError("saved model has a different number of layers")
        for layer, st in zip(self.layers, state["layers"], strict=True):
            layer.load_state({k: v.to(self.device) for k, v in st.items()})
        self.frames_learned = int(state["frames_learned"])
        self.generator.set_state(state["generator"])

    def save(self, path: str | os.PathLike, config: dict[str, Any]) -> Path:
        """Write weights, state and the building config atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"state": self.state(), "config": config}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a saved model's payload without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)
