"""DataLoader batching, seeded shuffling with saveable state, and the augmentations."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

from refvit.data import Compose, DataLoader, Normalize, RandomCrop, RandomHorizontalFlip


def numbered(n, size=4):
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, size, size, 1), np.float32)
    return images, np.arange(n)


def epoch_labels(loader):
    return [labels.tolist() for _, labels in loader]


@given(n=st.integers(1, 30), batch_size=st.integers(1, 12), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**16))
def test_an_epoch_visits_each_image_once(n, batch_size, drop_last, shuffle, seed):
    assume(not (drop_last and batch_size > n))
    loader = DataLoader(*numbered(n), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    batches = list(loader)
    assert len(batches) == len(loader)
    seen = np.concatenate([labels for _, labels in batches])
    assert len(set(seen.tolist())) == len(seen)
    assert len(seen) == (n // batch_size * batch_size if drop_last else n)
    for images, labels in batches:
        np.testing.assert_array_equal(images[:, 0, 0, 0], labels)  # images travel with their labels
        assert images.flags.c_contiguous
    if not shuffle:
        assert seen.tolist() == list(range(len(seen)))


def test_shuffle_differs_per_epoch_and_is_seeded():
    first = DataLoader(*numbered(20), 5, shuffle=True, seed=3)
    second = DataLoader(*numbered(20), 5, shuffle=True, seed=3)
    a, b = epoch_labels(first), epoch_labels(first)
    assert a != b
    assert epoch_labels(second) == a


def test_state_dict_resumes_the_same_order_and_augmentation():
    def make():
        return DataLoader(*numbered(16, size=6), 4, shuffle=True, seed=1,
                          augment=Compose([RandomCrop(2, seed=4), RandomHorizontalFlip(seed=5)]))

    loader = make()
    list(loader)
    saved = loader.state_dict()
    expected = list(loader)
    restored = make()
    restored.load_state_dict(saved)
    for (x, y), (ex, ey) in zip(restored, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_random_crop_shifts_with_zero_fill():
    image = np.arange(1, 26, dtype=np.float64).reshape(1, 5, 5, 1)
    crop = RandomCrop(padding=2, seed=0)
    padded = np.pad(image[0, :, :, 0], 2)
    for _ in range(10):
        out = crop(image)[0, :, :, 0]
        assert out.shape == (5, 5)
        matches = [(top, left) for top in range(5) for left in range(5)
                   if np.array_equal(padded[top:top + 5, left:left + 5], out)]
        assert matches  # some window of the zero-padded image
    np.testing.assert_array_equal(RandomCrop(padding=0)(image), image)


def test_flip_mirrors_about_half_and_p_extremes():
    images = np.random.default_rng(0).random((200, 3, 4, 2))
    out = RandomHorizontalFlip(0.5, seed=1)(images)
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, images)])
    assert np.all(mirrored ^ kept) and 60 < mirrored.sum() < 140
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(images), images)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(images), images[:, :, ::-1])


def test_normalize_per_channel_keeps_dtype():
    images = np.ones((2, 2, 2, 3), np.float32) * np.array([1.0, 2.0, 3.0], np.float32)
    out = Normalize([1.0, 1.0, 1.0], [1.0, 2.0, 4.0])(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.5, 0.5])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), ValueError, "DataLoader: 'batch_size' must be an integer >= 1; got 0"),
    (dict(batch_size=9, drop_last=True), ValueError, "DataLoader: 'batch_size' must be <= the number of images"),
    (dict(batch_size=2, augment="crop"), TypeError, "DataLoader: 'augment' must be callable"),
])
def test_loader_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(*numbered(8), **kwargs)
    with pytest.raises(ValueError, match=r"DataLoader: 'labels' must have shape \(8,\)"):
        DataLoader(numbered(8)[0], np.arange(7), 2)
