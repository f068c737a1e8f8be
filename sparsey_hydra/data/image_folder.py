"""Dataset type `image_folder`: class subfolders of PNG/JPEG images, loaded as grayscale."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from sparsey_hydra.data.image_set import ImageSet
from sparsey_hydra.errors import SparseyConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderParams(BaseModel):
    """Parameters of the `image_folder` dataset."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Folder holding one subfolder of images per class.")
    limit: int | None = Field(default=None, ge=1, description="Keep only the first N items.")


def list_class_files(
    path: str, suffixes: tuple[str, ...], what: str, limit: int | None = None
) -> list[tuple[int, str, Path]]:
    """(label, "class/file", file) for each matching file under `path`'s class subfolders.

    Sorted by class then file name so that runs see the same items in the same order; the label
    is the class subfolder's index in sorted order. `what` describes the expected files in the
    error messages. Hidden files and folders are skipped.
    """
    root = Path(path).expanduser()
    fix = f"point dataset.path at a folder of class subfolders of {what}"
    if not root.exists():
        raise SparseyConfigError(f"dataset.path: '{path}' does not exist; {fix}")
    if not root.is_dir():
        raise SparseyConfigError(f"dataset.path: '{path}' is not a directory; {fix}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    found: list[tuple[int, str, Path]] = []
    for label, folder in enumerate(classes):
        files = sorted(
            f for f in folder.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes
        )
        found.extend((label, f"{folder.name}/{f.name}", f) for f in files)
    if not found:
        raise SparseyConfigError(f"dataset.path: '{path}' has no {what} in class subfolders; {fix}")
    return found if limit is None else found[:limit]


def load_files(
    files: list[tuple[int, str, Path]], read: Callable[[Path], torch.Tensor]
) -> ImageSet:
    """Read every listed file with `read` into an ImageSet."""
    return ImageSet(
        images=[read(file) for _, _, file in files],
        labels=[label for label, _, _ in files],
        names=[name for _, name, _ in files],
    )


def read_image(file: Path) -> torch.Tensor:
    """One image file as a grayscale H×W float32 tensor in [0, 1]; a bad file is a config error."""
    try:
        with Image.open(file) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        # PIL's messages repeat the path; the OS reason (or the error type) is enough.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SparseyConfigError(
            f"dataset: '{file}' is not a readable image ({reason}); replace or remove the file"
        ) from None
    return torch.from_numpy(pixels / 255.0)


def load(params: ImageFolderParams) -> ImageSet:
    """Load the images under `params.path`, sorted by class then file name; sizes may differ."""
    files = list_class_files(params.path, IMAGE_SUFFIXES, "PNG/JPEG images", params.limit)
    return load_files(files, read_image)
