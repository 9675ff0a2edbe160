"""The image data loaders (dpm_lab.images): shapes, the fixed split, folders, npz files, checksums, display."""
import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dpm_lab import images as I
from dpm_lab import store

LOADERS = {"mnist5k": (I.load_mnist5k, 28, 5000, 1000), "digits8": (I.load_digits8, 8, 1797, 359)}


@pytest.mark.parametrize("name", LOADERS)
def test_shapes_ranges_and_split_sizes(name):
    load, side, n_all, n_held = LOADERS[name]
    sizes = {}
    for split in I.SPLITS:
        x, y = load(split)
        assert x.shape == (len(y), 1, side, side) and x.dtype == torch.float32 and y.dtype == torch.long
        assert x.min() == -1 and x.max() == 1
        assert set(y.tolist()) == set(range(10))
        sizes[split] = len(y)
    assert sizes == {"all": n_all, "heldout": n_held, "train": n_all - n_held}
    x01, _ = load("heldout", normalize=False)
    assert x01.min() == 0 and x01.max() == 1
    torch.testing.assert_close(I.from_unit(x01), load("heldout")[0])


@pytest.mark.parametrize("name", LOADERS)
def test_split_is_disjoint_stratified_and_deterministic(name):
    _, labels = LOADERS[name][0]("all")
    train, held = I.split_indices(labels, "train"), I.split_indices(labels, "heldout")
    assert not set(train) & set(held)
    assert sorted(np.concatenate([train, held])) == list(range(len(labels)))
    counts = np.bincount(labels.numpy()[held], minlength=10)
    np.testing.assert_array_equal(counts, np.round(0.2 * np.bincount(labels.numpy())))
    np.testing.assert_array_equal(held, I.split_indices(labels, "heldout"))
    x1, y1 = LOADERS[name][0]("train")
    x2, y2 = LOADERS[name][0]("train")
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(set(y1[:50].tolist())) > 5  # splits come shuffled, not sorted by class


def test_split_digest_is_pinned():
    # the held-out set must never change silently (NumPy's legacy RandomState stream is frozen)
    _, labels = I.load_mnist5k("all")
    held = np.sort(I.split_indices(labels, "heldout"))
    assert hashlib.sha256(held.tobytes()).hexdigest()[:16] == "7b5c582876646118"


def test_dtype_and_device_arguments():
    x, y = I.load_digits8("heldout", dtype=torch.float64, device="cpu")
    assert x.dtype == torch.float64 and x.device.type == "cpu" and y.device.type == "cpu"
    with pytest.raises(TypeError, match="dtype"):
        I.load_mnist5k(dtype=torch.int64)
    with pytest.raises(ValueError, match="split"):
        I.load_mnist5k("test")


def _png(path, value, size=(12, 10), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_image_folder_labels_from_subfolders(tmp_path):
    for i in range(3):
        _png(tmp_path / "dog" / f"{i}.png", 255)
    for i in range(2):
        _png(tmp_path / "cat" / f"{i}.png", 0)
    x, y, classes = I.load_image_folder(tmp_path)
    assert classes == ["cat", "dog"] and y.tolist() == [0, 0, 1, 1, 1]
    assert x.shape == (5, 1, 10, 12)  # PIL size is (W, H)
    assert (x[y == 0] == -1).all() and (x[y == 1] == 1).all()
    x, _, _ = I.load_image_folder(tmp_path, size=8, grayscale=False, dtype=torch.float64)
    assert x.shape == (5, 3, 8, 8) and x.dtype == torch.float64


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        I.load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        I.load_image_folder(tmp_path)
    _png(tmp_path / "a.png", 0, size=(8, 8))
    _png(tmp_path / "b.png", 0, size=(9, 9))
    with pytest.raises(ValueError, match="size="):
        I.load_image_folder(tmp_path)
    x, y, classes = I.load_image_folder(tmp_path, size=(6, 7))
    assert x.shape == (2, 1, 6, 7) and y.tolist() == [0, 0] and classes == [tmp_path.name]
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="c.png"):
        I.load_image_folder(tmp_path, size=4)


def test_load_npz_layouts_and_errors(tmp_path):
    imgs = np.random.RandomState(0).randint(0, 256, (4, 5, 6, 3)).astype(np.uint8)
    np.savez(tmp_path / "a.npz", images=imgs, labels=np.arange(4))
    x, y = I.load_npz(tmp_path / "a.npz")
    assert x.shape == (4, 3, 5, 6) and y.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), imgs / 127.5 - 1, atol=1e-6)
    np.savez(tmp_path / "b.npz", x=np.full((2, 4, 4), 0.5))
    x, y = I.load_npz(tmp_path / "b.npz", key="x", normalize=False)
    assert y is None and x.shape == (2, 1, 4, 4) and (x == 0.5).all()
    with pytest.raises(ValueError, match="key 'images'"):
        I.load_npz(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", images=np.full((2, 4, 4), 3.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        I.load_npz(tmp_path / "c.npz")
    with pytest.raises(ValueError, match="damaged"):
        I.load_npz(tmp_path / "a.npz", sha256="0" * 64)
    (tmp_path / "d.npz").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="damaged"):
        I.load_npz(tmp_path / "d.npz")


def _flip_bytes(path, at=1000, count=16):
    data = bytearray(path.read_bytes())
    for i in range(at, at + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_missing_and_damaged_mnist_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="mnist5k.npz is missing.*make_mnist5k"):
        I.load_mnist5k(path=tmp_path / "mnist5k.npz")
    bad = tmp_path / "mnist5k.npz"
    shutil.copy(store.data_dir() / "mnist5k.npz", bad)
    _flip_bytes(bad)
    with pytest.raises(store.DamagedFileError, match="mnist5k.npz is damaged.*make_mnist5k"):
        I.load_mnist5k(path=bad)
    monkeypatch.setenv("DPM_LAB_DATA", str(tmp_path))             # the data folder without its record
    with pytest.raises(store.MissingFileError, match="mnist5k.json is missing.*make_mnist5k"):
        I.load_mnist5k()


def test_display_helpers():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5)
    assert I.to_unit(x).flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert I.to_display(x).shape == (1, 1, 5)
    assert I.to_display(x.expand(2, 3, 1, 5)).shape == (2, 1, 5, 3)
