"""A Sparsey model: a stack of layers over a binary image, one seeded generator, save/load."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from sparsey_hydra.core.column_layout import GatherBuffer
from sparsey_hydra.core.device import intra_op_threads
from sparsey_hydra.core.geometry import LayerGeometry, input_geometry
from sparsey_hydra.core.sparsey_layer import (
    INACTIVE,
    LayerOutput,
    SparseyLayer,
)
from sparsey_hydra.core.wavefront import Wavefront, fusable
from sparsey_hydra.errors import SparseyConfigError

FORMAT_VERSION = 1
#: recognition runs in blocks of frames whose per-frame tensors (B×M×max(J, QK) per layer) add
#: up to about this many elements (bounded memory, same codes), between these block sizes
RECOGNITION_ELEMENTS = 1 << 22
RECOGNITION_BLOCK = (128, 4096)
#: blocks of at least this many frames are recognised frames last, as bfloat16 matmuls over
#: each layer's blocks of W (`SparseyLayer.recognize_columns`), where every layer allows it;
#: smaller ones gather only their live inputs (a matmul reads all of W for a handful of frames)
COLUMN_MIN_FRAMES = 32
#: CPU threads per operator in the learning loop and in small recognition batches
LOOP_THREADS = 1
#: ... unless a frame's live inputs (summed over layers) average at least this many: then each
#: tick's gathers and scatters are large enough for torch's own thread count to pay (wide RFs:
#: bench_wide trains ~1.6× faster on 2 threads; bench_medium was slower on 2)
PARALLEL_LIVE_INPUTS = 1 << 15


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
    """Layers run bottom-up; learning is strictly sequential, one frame at a time.

    All randomness comes from one seeded CPU generator (so CPU and CUDA runs draw the same
    numbers), consumed in a fixed order: frame, then layer, then MAC, then CM, and only
    active MACs draw. Which MACs are active depends on the input alone (the gate counts
    active lower MACs, not their codes), so a whole chunk's draws are taken at once and
    dealt out; chunking therefore never changes a code.
    """

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
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)
        self.frames_learned = 0
        self.fused = all(isinstance(layer, SparseyLayer) for layer in self.layers)
        self.wavefront = Wavefront(self.layers) \
            if fusable(self.layers) else None
        self.gather_buffer = GatherBuffer()  # recognition frames last, reused between calls

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
        """All layers on a batch, without changing weights; layer ℓ+1 reads Y_ℓ.

        Each layer draws for its own active MACs (layer by layer): the reference order for
        a single frame, and what a layer from a plugin gets.
        """
        y = self._input(images)
        outs = []
        for layer in self.layers:
            out = layer.forward(y, learning, self.generator)
            outs.append(out)
            y = out.y
        return outs

    def _activity(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(active, n) of every layer for a B×P×1 input, from the input alone."""
        lower = x[..., 0] > 0
        result = []
        for layer in self.layers:
            active, n = layer.activity(lower)
            result.append((active, n))
            lower = active
        return result

    def _dealt_draws(self, activity: list[tuple[torch.Tensor, torch.Tensor]],
                     per_mac: list[int]) -> list[torch.Tensor]:
        """One draw call for a chunk, dealt in (frame, layer, MAC, CM) order: per layer B×M×k
        (inactive MACs get 0). One `masked_scatter_` over the frame's slots of all layers side
        by side fills them in exactly that order."""
        frames = activity[0][0].shape[0]
        slots = torch.cat([a.unsqueeze(-1).expand(-1, -1, k).reshape(frames, -1)
                           for (a, _), k in zip(activity, per_mac, strict=True)], dim=1)
        draws = torch.rand(int(slots.sum()), generator=self.generator).to(self.device)
        dealt = torch.zeros(slots.shape, device=self.device).masked_scatter_(slots, draws)
        out, lo = [], 0
        for (active, _), k in zip(activity, per_mac, strict=True):
            width = active.shape[1] * k
            out.append(dealt[:, lo:lo + width].view(frames, active.shape[1], k))
            lo += width
        return out

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
    def learn_frames(self, images: torch.Tensor) -> list[LayerOutput]:
        """Learn B frames in order (frame t's code uses the weights of frames < t).

        Returns each layer's per-frame outputs as they were before each frame's update —
        what the metrics see. Same codes and weights as B calls of `learn_frame`; with only
        Sparsey layers it runs the fused per-frame step instead.
        """
        if not self.fused:
            outs = [self.learn_frame(images[i:i + 1]) for i in range(images.shape[0])]
            return [LayerOutput.cat([o[ell] for o in outs]) for ell in range(len(self.layers))]
        x = self._input(images)
        frames = x.shape[0]
        with intra_op_threads(self.device, LOOP_THREADS):
            activity = self._activity(x)
        with intra_op_threads(self.device, self._loop_threads(activity, frames)):
            uniforms = self._dealt_draws(activity, [layer.num_cms for layer in self.layers])
            if self.wavefront is not None:
                winners, fam = self.wavefront.learn(x[..., 0] > 0, activity, uniforms)
            else:
                cells, fam = self._learn_layer_by_layer(x, activity, uniforms)
                winners = [c - layer.cm_offset for c, layer in zip(cells, self.layers,
                                                                   strict=True)]
        self.frames_learned += frames
        outs = []
        for layer, (active, _), w_out, g_out in zip(self.layers, activity, winners, fam,
                                                   strict=True):
            codes = torch.where(active.unsqueeze(-1), w_out, -1)
            outs.append(LayerOutput(active=active, codes=codes, y=None,
                                    num_neurons=layer.num_neurons,
                                    g=torch.where(active, g_out, float("nan"))))
        return outs

    def _loop_threads(self, activity: list[tuple[torch.Tensor, torch.Tensor]],
                      frames: int) -> int | None:
        """CPU threads for the learning loop: one, or torch's own for large frames."""
        if self.device.type != "cpu":
            return None
        live = sum(float((n * a).sum()) for a, n in activity) / max(frames, 1)
        return None if live >= PARALLEL_LIVE_INPUTS else LOOP_THREADS

    def _learn_layer_by_layer(self, x: torch.Tensor,
                              activity: list[tuple[torch.Tensor, torch.Tensor]],
                              uniforms: list[torch.Tensor]
                              ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The per-layer loop: frame after frame, layer after layer (cells F×M×Q, G F×M)."""
        frames = x.shape[0]
        n_safe = [n.clamp(min=1.0) for _, n in activity]
        inactive = [~a.unsqueeze(-1) for a, _ in activity]
        pixels = torch.where(x > 0, 0, INACTIVE)
        pixels = torch.cat([pixels, pixels.new_full((frames, 1, 1), INACTIVE)], dim=1)
        tables = [torch.full((layer.num_macs + 1, layer.num_cms), INACTIVE, dtype=torch.long,
                             device=self.device) for layer in self.layers]
        cells = [torch.empty(frames, layer.num_macs, layer.num_cms, dtype=torch.long,
                             device=self.device) for layer in self.layers]
        fam = [torch.empty(frames, layer.num_macs, device=self.device) for layer in self.layers]
        none = torch.tensor(INACTIVE, device=self.device)
        pairs = list(zip(self.layers, tables, cells, fam, n_safe, inactive, uniforms,
                         strict=True))
        for f in range(frames):
            lower = pixels[f]
            for layer, table, c_out, g_out, n_f, off_f, u_f in pairs:
                c, g = layer.learn_step(lower, n_f[f], off_f[f], u_f[f])
                torch.where(off_f[f], none, c, out=table[:-1])
                c_out[f] = c
                g_out[f] = g
                lower = table
        return cells, fam

    @torch.no_grad()
    def recognize(self, images: torch.Tensor) -> list[LayerOutput]:
        """Recognition mode (argmax, random tie-break); never changes the model's weights.

        Tie-break keys are dealt per frame, so a frame's code does not depend on the batch;
        a large batch is recognised in blocks (`recognition_block`) to bound memory. Blocks of
        ≥ `COLUMN_MIN_FRAMES` frames run frames last where every layer allows it: their
        outputs are then frames-first views of frames-last tensors (`.contiguous()` before a
        `.view()`).
        """
        if not self.fused:
            return self.forward(images, learning=False)
        x = self._input(images)
        threads = LOOP_THREADS if x.shape[0] < 32 else None
        columns = x.shape[0] >= COLUMN_MIN_FRAMES and all(
            layer.uses_column_recognition() for layer in self.layers)
        with intra_op_threads(self.device, threads):
            step = self.recognition_block(columns)
            count = max(1, -(-x.shape[0] // step))
            step = max(1, -(-x.shape[0] // count))  # equal blocks: no short last one
            if columns:
                return self._recognize_columns(x, step)
            blocks = [self._recognize_block(x[lo:lo + step])
                      for lo in range(0, x.shape[0], step)]
        return [LayerOutput.cat([b[ell] for b in blocks]) for ell in range(len(self.layers))]

    def recognition_block(self, columns: bool = False) -> int:
        """Frames per recognition block: small networks take many frames at once."""
        per_frame = sum(layer.num_macs * max(1 if columns else getattr(layer, "fan_in", 1),
                                             layer.num_cms * layer.num_neurons)
                        for layer in self.layers)
        lo, hi = RECOGNITION_BLOCK
        return max(lo, min(hi, RECOGNITION_ELEMENTS // max(per_frame, 1)))

    def _recognize_columns(self, x: torch.Tensor, step: int) -> list[LayerOutput]:
        """Blocks recognised frames last, layer after layer, into one output per layer (same
        codes as the gathers)."""
        outs = [layer.column_output(x.shape[0]) for layer in self.layers]
        for first in range(0, x.shape[0], step):
            block = x[first:first + step]
            activity = self._activity(block)
            keys = self._dealt_draws(activity, [layer.num_cms for layer in self.layers])
            lower = block[..., 0].t().to(torch.bfloat16)
            for layer, out, k, (active, n) in zip(self.layers, outs, keys, activity,
                                                  strict=True):
                lower = layer.recognize_columns(lower, active, n, k, out, first,
                                                self.gather_buffer)
        return outs

    def _recognize_block(self, x: torch.Tensor) -> list[LayerOutput]:
        activity = self._activity(x)
        keys = self._dealt_draws(activity, [layer.num_cms for layer in self.layers])
        y, outs = x, []
        lower: tuple[torch.Tensor | None, torch.Tensor] = (None, x[..., 0] > 0)
        for layer, k, act in zip(self.layers, keys, activity, strict=True):
            out = layer.forward(y, False, self.generator, draws=k, activity=act, lower=lower)
            out.inputs = None  # the B×M×J row table is not needed past this block
            outs.append(out)
            y, lower = out.y, (out.codes, act[0])
        return outs

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
        if state.get("format") != FORMAT_VERSION:
            raise SparseyConfigError(
                f"the model file has format {state.get('format')!r}, this version reads "
                f"format {FORMAT_VERSION}; retrain it with this version of sparsey-hydra")
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
        save_atomic(path, {"state": self.state(), "config": config})
        return path


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temp file beside `path`, fsync, rename: never a half-written file."""
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


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Load a saved model's payload without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)
