"""Tests of the image data loaders (dpm_lab.images) and the digit evaluation (dpm_lab.digit_eval)."""
import hashlib
import shutil

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from dpm_lab import digit_eval as E
from dpm_lab import images as I

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


def test_missing_and_damaged_mnist_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_mnist5k"):
        I.load_mnist5k(path=tmp_path / "mnist5k.npz")
    bad = tmp_path / "mnist5k.npz"
    shutil.copy(I.data_dir() / "mnist5k.npz", bad)
    _flip_bytes(bad)
    with pytest.raises(ValueError, match="damaged.*make_mnist5k"):
        I.load_mnist5k(path=bad)


def test_damaged_classifier_checkpoint(tmp_path, monkeypatch):
    shutil.copytree(I.data_dir() / "zoo_images", tmp_path / "zoo_images")
    _flip_bytes(tmp_path / "zoo_images" / "digit_classifier_digits8.pt")
    monkeypatch.setenv("DPM_LAB_DATA", str(tmp_path))
    monkeypatch.setattr(E, "_CACHE", {})
    with pytest.raises(ValueError, match="damaged.*digit_eval build"):
        E.load_classifier("digits8")
    (tmp_path / "zoo_images" / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="digit_eval build"):
        E.load_classifier("mnist5k")


def test_display_helpers():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 1, 5)
    assert I.to_unit(x).flatten().tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert I.to_display(x).shape == (1, 1, 5)
    assert I.to_display(x.expand(2, 3, 1, 5)).shape == (2, 1, 5, 3)


@pytest.mark.parametrize("name", LOADERS)
def test_classifier_recognises_unseen_training_split(name):
    x, y = LOADERS[name][0]("train")
    assert E.conditional_accuracy(x, y) > 0.9
    assert E.conditional_accuracy(x, (y + 1) % 10) < 0.05
    assert E.digit_features(x[:7]).shape == (7, 64)


def test_frechet_distance_matches_sqrtm_formula():
    rs = np.random.RandomState(0)
    a, b = rs.randn(6, 6), rs.randn(6, 3)
    c1, c2 = a @ a.T, b @ b.T  # c2 is singular
    mu1, mu2 = rs.randn(6), rs.randn(6)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * covmean)
    assert E.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-6)
    assert E.frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0, abs=1e-8)


def test_fdd_zero_for_itself_and_grows_with_noise():
    x, _ = I.load_mnist5k("heldout")
    x = x[:500]
    assert E.frechet_digit_distance(x, x) == pytest.approx(0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    fdds = [E.frechet_digit_distance(x, x + s * torch.randn(x.shape, generator=g)) for s in (0.1, 0.2, 0.4, 0.8)]
    assert all(a < b for a, b in zip(fdds, fdds[1:])), fdds
    with pytest.raises(ValueError, match="differ in size"):
        E.frechet_digit_distance(x, I.load_digits8("heldout")[0])


def test_fdd_floor_and_evaluate():
    g = torch.Generator().manual_seed(0)
    floor = E.fdd_floor(359, "digits8", repeats=3, generator=g)
    assert 0 < floor < 30
    with pytest.raises(ValueError, match="n must be"):
        E.fdd_floor(360, "digits8")
    x, y = I.load_digits8("heldout")
    out = E.evaluate(x + 0.5 * torch.randn(x.shape, generator=g), y, generator=g, verbose=False)
    assert out["n"] == 359 and out["fdd"] > out["fdd_floor"] and 0 <= out["conditional_accuracy"] <= 1


def test_random_shift_is_seeded_and_keeps_shape():
    x, _ = I.load_digits8("heldout")
    a = E.random_shift(x, 1, generator=torch.Generator().manual_seed(3))
    b = E.random_shift(x, 1, generator=torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(E.random_shift(x, 0), x)
