"""Digit evaluation (dpm_lab.digit_eval): the zoo's classifiers, accuracy, Frechet distances and floors."""
import numpy as np
import pytest
import scipy.linalg
import torch

from dpm_lab import digit_eval as E
from dpm_lab import images as I
from dpm_lab import store, zoo

LOADERS = {"mnist5k": I.load_mnist5k, "digits8": I.load_digits8}


def test_load_classifier_is_the_zoo_checkpoint_cached():
    net = E.load_classifier("digits8")
    assert zoo.recipe_of(net).name == E.classifier_name("digits8") == "digit_classifier_digits8"
    assert E.load_classifier("digits8") is net and not net.training
    ref = zoo.load("digit_classifier_digits8")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="dataset"):
        E.load_classifier("cifar10")


def test_damaged_or_missing_classifier_is_a_clear_error(tmp_path, monkeypatch):
    name = "digit_classifier_digits8"
    for f in (f"{name}.pt", store.MANIFEST):
        (tmp_path / f).write_bytes((store.zoo_dir() / f).read_bytes())
    data = bytearray((tmp_path / f"{name}.pt").read_bytes())
    data[4000] ^= 0xFF
    (tmp_path / f"{name}.pt").write_bytes(bytes(data))
    monkeypatch.setenv("DPM_LAB_ZOO", str(tmp_path))                  # a new zoo folder: not served from the cache
    with pytest.raises(store.DamagedFileError, match=f"damaged.*python -m dpm_lab.zoo build {name}"):
        E.load_classifier("digits8")
    with pytest.raises(store.MissingFileError, match="digit_classifier_mnist5k.pt is missing"):
        E.load_classifier("mnist5k")


@pytest.mark.parametrize("name", LOADERS)
def test_classifier_recognises_unseen_training_split(name):
    x, y = LOADERS[name]("train")
    assert E.conditional_accuracy(x, y) > 0.9
    assert E.conditional_accuracy(x, (y + 1) % 10) < 0.05
    assert E.digit_features(x[:7]).shape == (7, 64) and E.digit_features(x[:7]).dtype == torch.float64
    assert torch.equal(E.predict(x[:50]), E.load_classifier(name)(x[:50]).argmax(1))


def test_images_are_checked():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\) or \(N, 1, 8, 8\)"):
        E.predict(torch.zeros(2, 1, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        E.predict(torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        E.predict(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="requested_labels must have shape"):
        E.conditional_accuracy(torch.zeros(3, 1, 8, 8), torch.zeros(2))


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


def test_command_line_only_prints_floors():
    with pytest.raises(SystemExit):
        E.main(["build"])                          # classifiers are rebuilt with python -m dpm_lab.zoo build
