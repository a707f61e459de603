"""Digits, shapes, .npz folders, bilinear resizing and data sets by name."""
import numpy as np
import pytest
import sklearn.datasets
import torch

from refvit.data import (SHAPE_CLASSES, load_dataset, load_digits, load_npz_folder, make_shapes,
                         resize_bilinear)
from refvit.data.digits import split_indices
from refvit.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_digits("train"), load_digits("test")


def test_digits_shapes_ranges_and_dtypes(digits):
    (train_x, train_y), (test_x, test_y) = digits
    assert train_x.shape == (1438, 32, 32, 3) and test_x.shape == (359, 32, 32, 3)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int64
    assert train_x.min() == 0.0 and train_x.max() == 1.0
    np.testing.assert_array_equal(train_x[..., 0], train_x[..., 2])  # grey repeated
    assert set(np.unique(test_y)) == set(range(10))


def test_digits_split_is_fixed_disjoint_and_stratified(digits):
    from sklearn.datasets import load_digits as sklearn_digits
    labels = sklearn_digits().target
    train, test = split_indices(labels)
    again_train, again_test = split_indices(labels)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 1797
    counts = np.bincount(labels[test], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    np.testing.assert_array_equal(digits[1][1], labels[test])


def test_digits_at_native_size_are_the_scaled_originals():
    images, labels = load_digits("all", size=8)
    bunch = sklearn.datasets.load_digits()
    np.testing.assert_allclose(images[..., 1], bunch.images / 16.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, bunch.target)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="load_digits: 'split' must be 'train', 'test' or 'all'; got 'val'"):
        load_digits("val")
    with pytest.raises(ValueError, match="load_digits: 'size' must be an integer >= 1"):
        load_digits("train", size=0)


def test_resize_matches_torch_interpolate():
    images = np.random.default_rng(0).random((2, 8, 5, 3))
    ours = resize_bilinear(images, (13, 32))
    theirs = torch.nn.functional.interpolate(torch.tensor(images).permute(0, 3, 1, 2), size=(13, 32),
                                             mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_resize_keeps_constants_and_bounds():
    images = np.full((1, 8, 8, 1), 0.25)
    np.testing.assert_allclose(resize_bilinear(images, 32), 0.25)
    images = np.random.default_rng(1).random((3, 8, 8, 2))
    out = resize_bilinear(images, 32)
    assert out.min() >= images.min() and out.max() <= images.max()


def test_shapes_are_balanced_in_range_and_deterministic():
    images, labels = make_shapes(60, size=24, seed=5)
    assert images.shape == (60, 24, 24, 3) and images.dtype == np.float32 and labels.dtype == np.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(labels), [10] * len(SHAPE_CLASSES))
    again, again_labels = make_shapes(60, size=24, seed=5)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, again_labels)
    other, _ = make_shapes(60, size=24, seed=6)
    assert not np.array_equal(images, other)


def test_shape_classes_differ_in_drawn_area():
    images, labels = make_shapes(120, size=32, seed=0)
    # the shape is brighter than its background in every channel: its pixel count tells the classes apart on average
    bright = (images.mean(axis=-1) > 0.5).mean(axis=(1, 2))
    area = {SHAPE_CLASSES[k]: bright[labels == k].mean() for k in range(len(SHAPE_CLASSES))}
    assert area["ring"] < area["circle"] and area["cross"] < area["square"]


def test_make_shapes_bad_arguments():
    with pytest.raises(ValueError, match="make_shapes: 'n' must be an integer >= 1; got 0"):
        make_shapes(0)


def write_npz(path, n, shape=(4, 4, 3), dtype=np.uint8, offset=0, **overrides):
    arrays = dict(images=np.full((n,) + shape, 51, dtype=dtype), labels=np.arange(offset, offset + n))
    arrays.update(overrides)
    np.savez(path, **arrays)


def test_npz_folder_concatenates_in_name_order(tmp_path):
    write_npz(tmp_path / "b.npz", 2, offset=5)
    write_npz(tmp_path / "a.npz", 3)
    (tmp_path / "notes.txt").write_text("ignored")
    images, labels = load_npz_folder(tmp_path)
    assert images.shape == (5, 4, 4, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images, 0.2)  # uint8 / 255
    np.testing.assert_array_equal(labels, [0, 1, 2, 5, 6])


@pytest.mark.parametrize("setup, error, match", [
    (lambda p: p / "missing", UserError, "load_npz_folder: 'path' must be an existing folder"),
    (lambda p: p, UserError, "load_npz_folder: 'path' must hold .npz files"),
    (lambda p: np.savez(p / "x.npz", pixels=np.zeros((1, 2, 2, 3)), labels=np.zeros(1, int)) or p,
     ValueError, "load_npz_folder: each file must hold arrays 'images' and 'labels'"),
    (lambda p: write_npz(p / "x.npz", 2, labels=np.zeros(3, int)) or p,
     ValueError, r"load_npz_folder: 'labels' must have shape \(2,\)"),
    (lambda p: write_npz(p / "a.npz", 1) or write_npz(p / "b.npz", 1, shape=(5, 5, 3)) or p,
     ValueError, "load_npz_folder: all files must have images of one"),
])
def test_npz_folder_errors(tmp_path, setup, error, match):
    with pytest.raises(error, match=match):
        load_npz_folder(setup(tmp_path))


def test_dataset_from_folder_with_train_and_test(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    write_npz(tmp_path / "train" / "0.npz", 4, dtype=np.float32)
    write_npz(tmp_path / "test" / "0.npz", 2, dtype=np.float32, offset=1)
    dataset = load_dataset(str(tmp_path))
    assert dataset.train_images.shape[0] == 4 and dataset.test_images.shape[0] == 2 and dataset.num_classes == 4


def test_dataset_from_plain_folder_is_split_and_unknown_name_fails(tmp_path):
    write_npz(tmp_path / "all.npz", 10)
    dataset = load_dataset(str(tmp_path))
    assert len(dataset.train_labels) == 8 and len(dataset.test_labels) == 2
    assert len(np.intersect1d(dataset.train_labels, dataset.test_labels)) == 0
    with pytest.raises(ValueError, match="load_dataset: 'dataset' must be digits or shapes or a folder"):
        load_dataset("imagenet")
