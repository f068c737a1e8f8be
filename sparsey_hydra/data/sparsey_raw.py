"""Dataset type `sparsey_raw`: class subfolders of Sparsey `.raw` files (one byte per pixel)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sparsey_hydra.data.image_folder import list_class_files, load_files
from sparsey_hydra.data.image_set import ImageSet
from sparsey_hydra.errors import SparseyConfigError


class SparseyRawParams(BaseModel):
    """Parameters of the `sparsey_raw` dataset; `.raw` files carry no header, so size is given."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Folder holding one subfolder of .raw files per class.")
    width: int = Field(ge=1, description="Pixels per row of every file.")
    height: int = Field(ge=1, description="Rows of every file.")
    limit: int | None = Field(default=None, ge=1, description="Keep only the first N items.")


def read_raw(file: Path, width: int, height: int) -> torch.Tensor:
    """One row-major byte-per-pixel file as a height×width float32 tensor in [0, 1]."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise SparseyConfigError(
            f"dataset: '{file}' cannot be read ({exc.strerror or exc}); replace or remove the file"
        ) from None
    expected = width * height
    if len(data) != expected:
        raise SparseyConfigError(
            f"dataset: '{file}' has {len(data)} bytes, expected width×height = "
            f"{width}×{height} = {expected}; set dataset.width/dataset.height to the files' size"
        )
    pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def load(params: SparseyRawParams) -> ImageSet:
    """Load the `.raw` files under `params.path`, sorted by class then file name."""
    files = list_class_files(params.path, (".raw",), "Sparsey .raw files", params.limit)
    return load_files(files, partial(read_raw, width=params.width, height=params.height))
