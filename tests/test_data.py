"""Data layer: dataset loaders on the real shared files, transforms, and the pipeline."""

from __future__ import annotations

from pathlib import Path

import pluggy
import pytest
import torch
from pydantic import ValidationError

from sparsey_hydra import hookspecs
from sparsey_hydra.data import BUILTIN_DATASETS, digits, image_folder, sparsey_raw
from sparsey_hydra.data.preprocess import build_pipeline, preprocess_all
from sparsey_hydra.data.transforms import BUILTIN_TRANSFORMS
from sparsey_hydra.data.transforms.binarize import BinarizeParams
from sparsey_hydra.data.transforms.binarize import build as build_binarize
from sparsey_hydra.data.transforms.resize import ResizeParams
from sparsey_hydra.data.transforms.resize import build as build_resize
from sparsey_hydra.data.transforms.skeletonize import SkeletonizeParams
from sparsey_hydra.data.transforms.skeletonize import build as build_skeletonize
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import Registry


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared sample data, checked out next to the repository (../shared/data)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


class _TransformsOnlyPlugin:
    """Stand-in plugin registering only the built-in transforms.

    The full registry imports every kind's built-ins; this keeps the pipeline tests independent
    of the other kinds while still exercising the real `Registry.get`/`build_params` messages.
    """

    @staticmethod
    @hookspecs.hookimpl
    def sparsey_register_transforms():
        return BUILTIN_TRANSFORMS


@pytest.fixture
def stand_in_registry() -> Registry:
    """A real `Registry` over a plugin manager holding only the transforms stand-in plugin."""
    pm = pluggy.PluginManager("sparsey_hydra")
    pm.add_hookspecs(hookspecs)
    pm.register(_TransformsOnlyPlugin(), name="transforms stand-in")
    return Registry(pm, failed={})


# --- datasets -----------------------------------------------------------------------------


def test_builtin_datasets_are_named() -> None:
    assert [c.name for c in BUILTIN_DATASETS] == ["digits", "image_folder", "sparsey_raw"]


def test_digits_loads_all_items_in_unit_range() -> None:
    data = digits.load(digits.DigitsParams())
    assert len(data) == 1797
    assert all(img.shape == (8, 8) and img.dtype == torch.float32 for img in data.images)
    stacked = torch.stack(data.images)
    assert stacked.min() >= 0 and stacked.max() <= 1 and stacked.max() == 1
    assert set(data.labels) == set(range(10))
    assert len(data.names) == 1797


def test_digits_limit() -> None:
    assert len(digits.load(digits.DigitsParams(limit=5))) == 5


@pytest.mark.parametrize(
    "params",
    [
        (digits.DigitsParams, {"limit": 0}),
        (digits.DigitsParams, {"bogus": 1}),
        (image_folder.ImageFolderParams, {}),
        (sparsey_raw.SparseyRawParams, {"path": "x", "width": 0, "height": 24}),
    ],
)
def test_dataset_params_reject_bad_values(params: tuple) -> None:
    model, values = params
    with pytest.raises(ValidationError):
        model(**values)


def test_image_folder_loads_mnist_png(shared_data: Path) -> None:
    data = image_folder.load(image_folder.ImageFolderParams(path=str(shared_data / "mnist_1k_png")))
    assert len(data) == 1000
    assert all(img.shape == (28, 28) and img.dtype == torch.float32 for img in data.images)
    stacked = torch.stack(data.images)
    assert stacked.min() >= 0 and stacked.max() <= 1
    assert sorted(set(data.labels)) == list(range(10))
    assert data.names == sorted(data.names)
    assert all(data.names[i].split("/")[0] == str(data.labels[i]) for i in range(len(data)))


def test_image_folder_limit_is_first_items_in_sorted_order(shared_data: Path) -> None:
    path = str(shared_data / "mnist_1k_png")
    full = image_folder.load(image_folder.ImageFolderParams(path=path))
    some = image_folder.load(image_folder.ImageFolderParams(path=path, limit=3))
    assert some.names == full.names[:3]
    assert torch.equal(some.images[0], full.images[0])


def test_sparsey_raw_loads_binary_items(shared_data: Path) -> None:
    params = sparsey_raw.SparseyRawParams(
        path=str(shared_data / "mnist_16x24_raw"), width=16, height=24
    )
    data = sparsey_raw.load(params)
    assert len(data) > 0
    assert all(img.shape == (24, 16) and img.dtype == torch.float32 for img in data.images)
    values = torch.unique(torch.stack(data.images))
    assert set(values.tolist()) <= {0.0, 1.0}
    assert sorted(set(data.labels)) == list(range(10))


def test_missing_path_is_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SparseyConfigError, match=r"dataset\.path: '.*nope' does not exist"):
        image_folder.load(image_folder.ImageFolderParams(path=str(missing)))


def test_path_not_a_directory_is_config_error(tmp_path: Path) -> None:
    file = tmp_path / "a.png"
    file.write_bytes(b"")
    with pytest.raises(SparseyConfigError, match=r"dataset\.path: .*a\.png' is not a directory"):
        sparsey_raw.load(sparsey_raw.SparseyRawParams(path=str(file), width=2, height=2))


def test_empty_folder_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "notes.txt").write_text("not an image")
    with pytest.raises(SparseyConfigError) as err:
        image_folder.load(image_folder.ImageFolderParams(path=str(tmp_path)))
    assert "dataset.path" in str(err.value) and "no PNG/JPEG images" in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "broken.png").write_bytes(b"not really a png")
    with pytest.raises(SparseyConfigError, match=r"broken\.png' is not a readable image"):
        image_folder.load(image_folder.ImageFolderParams(path=str(tmp_path)))


def test_raw_with_wrong_size_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "odd.raw").write_bytes(bytes(100))
    params = sparsey_raw.SparseyRawParams(path=str(tmp_path), width=16, height=24)
    with pytest.raises(SparseyConfigError) as err:
        sparsey_raw.load(params)
    msg = str(err.value)
    assert "odd.raw' has 100 bytes" in msg and "16×24 = 384" in msg
    assert "dataset.width/dataset.height" in msg


def test_raw_layout_is_row_major(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.raw").write_bytes(bytes([0, 255, 0, 0, 0, 0]))  # width 3, height 2
    data = sparsey_raw.load(sparsey_raw.SparseyRawParams(path=str(tmp_path), width=3, height=2))
    assert data.images[0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert data.names == ["a/x.raw"] and data.labels == [0]


# --- transforms ---------------------------------------------------------------------------


def test_builtin_transforms_are_named() -> None:
    assert [c.name for c in BUILTIN_TRANSFORMS] == ["resize", "binarize", "skeletonize"]


def test_binarize_outputs_only_zero_and_one() -> None:
    image = torch.linspace(0, 1, 64).reshape(8, 8)
    out = build_binarize(BinarizeParams(threshold=0.5))(image)
    assert out.shape == (8, 8) and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out, (image > 0.5).float())


def test_binarize_keeps_binary_images() -> None:
    image = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(build_binarize(BinarizeParams())(image), image)


def test_binarize_rejects_threshold_out_of_range() -> None:
    with pytest.raises(ValidationError):
        BinarizeParams(threshold=1.5)


@pytest.mark.parametrize("size", [(8, 8), (24, 16), (56, 40)])
def test_resize_shape_and_range(size: tuple[int, int]) -> None:
    image = (torch.rand(28, 28) > 0.5).float()
    out = build_resize(ResizeParams(height=size[0], width=size[1]))(image)
    assert out.shape == size and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_resize_rejects_zero_size() -> None:
    with pytest.raises(ValidationError):
        ResizeParams(height=0, width=4)


def test_skeletonize_thins_a_thick_bar() -> None:
    image = torch.zeros(20, 20)
    image[8:13, 3:17] = 1.0  # a bar five pixels thick
    out = build_skeletonize(SkeletonizeParams())(image)
    assert out.shape == (20, 20) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert 0 < out.sum() < image.sum()
    assert out.sum(dim=0).max() == 1  # one pixel thick in every column


# --- pipeline -----------------------------------------------------------------------------


def test_pipeline_applies_transforms_in_order(stand_in_registry: Registry) -> None:
    pipeline = build_pipeline(
        stand_in_registry,
        [{"name": "resize", "height": 24, "width": 16}, {"name": "binarize", "threshold": 0.3}],
    )
    out = pipeline(torch.rand(28, 28))
    assert out.shape == (24, 16)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_empty_pipeline_is_identity(stand_in_registry: Registry) -> None:
    image = torch.rand(5, 7)
    assert torch.equal(build_pipeline(stand_in_registry, [])(image), image)


def test_pipeline_unknown_transform_names_the_key(stand_in_registry: Registry) -> None:
    with pytest.raises(SparseyConfigError, match=r"preprocessing\.transforms\.1\.name: unknown"):
        build_pipeline(stand_in_registry, [{"name": "binarize"}, {"name": "blur"}])


def test_pipeline_bad_param_names_the_key(stand_in_registry: Registry) -> None:
    with pytest.raises(SparseyConfigError, match=r"preprocessing\.transforms\.0\.threshold"):
        build_pipeline(stand_in_registry, [{"name": "binarize", "threshold": 1.5}])


def test_pipeline_item_without_name(stand_in_registry: Registry) -> None:
    with pytest.raises(SparseyConfigError, match=r"preprocessing\.transforms\.0: expected"):
        build_pipeline(stand_in_registry, [{"threshold": 0.5}])


def test_preprocess_all_stacks(shared_data: Path, stand_in_registry: Registry) -> None:
    data = image_folder.load(
        image_folder.ImageFolderParams(path=str(shared_data / "mnist_1k_png"), limit=20)
    )
    pipeline = build_pipeline(stand_in_registry, [{"name": "resize", "height": 8, "width": 8}])
    out = preprocess_all(data.images, pipeline, names=data.names)
    assert out.shape == (20, 8, 8) and out.dtype == torch.float32


def test_preprocess_all_rejects_mixed_sizes(stand_in_registry: Registry) -> None:
    images = [torch.zeros(8, 8), torch.zeros(28, 28)]
    pipeline = build_pipeline(stand_in_registry, [])
    with pytest.raises(SparseyConfigError) as err:
        preprocess_all(images, pipeline, names=["a/first.png", "b/second.png"])
    msg = str(err.value)
    assert "item 'b/second.png' is 28×28 but the first is 8×8" in msg
    assert "resize" in msg
