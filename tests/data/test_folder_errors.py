"""Mistakes in a folder of .npz files: each is a UserError naming the file (issue 13, items 8 and 9)."""
import zipfile

import numpy as np
import pytest

from refvit._validate import MAX_NUM_CLASSES
from refvit.data import load_dataset, load_npz_folder
from refvit.errors import UserError


def save(path, n=4, shape=(4, 4, 3), labels=None, **arrays):
    images = np.full((n,) + shape, 7, np.uint8)
    np.savez(path, images=images, labels=np.arange(n) if labels is None else labels, **arrays)


def test_huge_label_is_refused_naming_file_and_label(tmp_path):
    save(tmp_path / "a.npz")
    save(tmp_path / "b.npz", labels=np.array([0, 1, 10 ** 9, 2]))
    with pytest.raises(UserError, match=rf"class indices 0 to {MAX_NUM_CLASSES - 1} .*got label 1000000000 in "
                                        rf".*b\.npz"):
        load_npz_folder(tmp_path)
    with pytest.raises(UserError, match="got label 1000000000"):
        load_dataset(str(tmp_path))


def test_largest_allowed_label_gives_that_many_classes(tmp_path):
    save(tmp_path / "a.npz", n=2, labels=np.array([0, MAX_NUM_CLASSES - 1]))
    save(tmp_path / "b.npz", n=8, labels=np.zeros(8, np.int64))
    assert load_dataset(str(tmp_path)).num_classes == MAX_NUM_CLASSES


def test_negative_label_is_named(tmp_path):
    save(tmp_path / "a.npz", labels=np.array([0, -3, 1, 2]))
    with pytest.raises(UserError, match=r"'labels' must be integers >= 0; got label -3 in .*a\.npz"):
        load_npz_folder(tmp_path)


@pytest.mark.parametrize("content", [
    b"this is not an archive at all",                       # NumPy would talk about pickled data
    b"\x80\x04\x95 looks like a pickle",                     # a pickle header
    b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_",    # a cut .npy header
    b"PK\x03\x04 truncated zip",                             # a cut zip
    b"",                                                     # empty
])
def test_garbage_file_names_the_file_and_never_suggests_pickle(tmp_path, content):
    save(tmp_path / "a.npz")
    (tmp_path / "b.npz").write_bytes(content)
    with pytest.raises(UserError) as info:
        load_npz_folder(tmp_path)
    message = str(info.value)
    assert "b.npz" in message and "is not a readable .npz file" in message
    assert "pickle" not in message.lower()
    assert "\n" not in message


def test_truncated_archive_names_the_file(tmp_path):
    save(tmp_path / "a.npz", n=64, shape=(8, 8, 3))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "a.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"a\.npz"):
        load_npz_folder(tmp_path)


def test_damaged_member_names_the_file(tmp_path):
    save(tmp_path / "a.npz", n=64, shape=(8, 8, 3))
    path = tmp_path / "a.npz"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("images.npy")
    middle = info.header_offset + 30 + len(info.filename) + 200  # inside images.npy's data
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"'images' in .*a\.npz cannot be read"):
        load_npz_folder(tmp_path)


def test_object_arrays_name_the_file_and_the_array(tmp_path):
    labels = np.empty(2, dtype=object)
    labels[:] = [0, 1]
    np.savez(tmp_path / "c.npz", images=np.zeros((2, 4, 4, 3), np.float32), labels=labels)
    with pytest.raises(UserError, match=r"'labels' in .*c\.npz is an object array") as info:
        load_npz_folder(tmp_path)
    assert "pickle" not in str(info.value).lower()


def test_single_npy_saved_as_npz_is_named(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    with pytest.raises(UserError, match=r"x\.npz holds a single array"):
        load_npz_folder(tmp_path)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_dataset_reports_its_channel_count(tmp_path, channels):
    save(tmp_path / "a.npz", n=10, shape=(6, 6, channels))
    dataset = load_dataset(str(tmp_path))
    assert dataset.in_chans == channels and dataset.mean.shape == (channels,)


def test_named_datasets_have_three_channels():
    assert load_dataset("shapes", size=8).in_chans == 3


def test_train_and_test_of_different_channels_are_refused(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    save(tmp_path / "train" / "a.npz", shape=(4, 4, 1))
    save(tmp_path / "test" / "a.npz", shape=(4, 4, 3))
    with pytest.raises(UserError, match=r"train/ and test/ must hold images of one \(H, W, C\)"):
        load_dataset(str(tmp_path))


def test_empty_split_is_refused(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    save(tmp_path / "train" / "a.npz")
    save(tmp_path / "test" / "a.npz", n=0, labels=np.zeros(0, np.int64))
    with pytest.raises(UserError, match="the test split of .* has no images"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("channels", [1, 4])
def test_a_model_built_with_in_chans_trains_on_the_folder(tmp_path, channels):
    from refvit.data import make_loaders
    from refvit.functional import cross_entropy
    from refvit.models import create_model

    save(tmp_path / "a.npz", n=10, shape=(32, 32, channels), labels=np.arange(10) % 3)
    dataset = load_dataset(str(tmp_path))
    model = create_model("nat_nano", num_classes=dataset.num_classes, in_chans=dataset.in_chans)
    train, _ = make_loaders(dataset, batch_size=4)
    images, labels = next(iter(train))
    assert images.shape == (4, 32, 32, channels)
    loss = cross_entropy(model(images), labels)
    loss.backward()
    assert np.isfinite(model.patch_embed.proj[0].weight.grad).all()
    assert model.patch_embed.proj[0].weight.shape[1] == channels
