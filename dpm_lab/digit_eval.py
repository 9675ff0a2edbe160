"""Judge generated digits with a small CNN: conditional accuracy and Fréchet digit distance (FDD).

    acc = dl.digit_eval.conditional_accuracy(samples, requested_labels)   # recognised as asked?
    fdd = dl.digit_eval.frechet_digit_distance(samples, real)             # FID-style, CNN features
    dl.digit_eval.evaluate(samples, requested_labels)                     # both, beside the floor

The classifiers (one for MNIST-5k 28x28, one for the 8x8 digits) are trained on the HELD-OUT
split only, so they never see the images a generative model trains on.  They are ordinary zoo
recipes (dl.recipes.classifiers: digit_classifier_mnist5k, digit_classifier_digits8) shipped as
hash-checked checkpoints in data/zoo/; rebuild them reproducibly with

    python -m dpm_lab.zoo build digit_classifier_mnist5k digit_classifier_digits8

FDD is the Fréchet distance between Gaussian fits of the classifier's 64-d penultimate features
(the recipe of FID, Heusel et al. 2017, with a digit CNN in place of Inception). It is biased
upward at small n, so always compare at equal n and print `fdd_floor(n)` beside it: the FDD
between real held-out and real training images, i.e. what a perfect generator would score.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from . import store, zoo
from .images import load_digits8, load_mnist5k
from .utils import check_choice

__all__ = ["DATASETS", "classifier_name", "load_classifier", "predict", "digit_features", "conditional_accuracy",
           "gaussian_fit", "frechet_distance", "frechet_digit_distance", "fdd_floor", "evaluate"]

DATASETS = ("mnist5k", "digits8")
_LOADERS = {"mnist5k": load_mnist5k, "digits8": load_digits8}
_CACHE: dict = {}


def classifier_name(dataset: str) -> str:
    """The zoo recipe of the classifier for `dataset` ("mnist5k" or "digits8"): digit_classifier_<dataset>."""
    check_choice(dataset, DATASETS, "dataset")
    return f"digit_classifier_{dataset}"


def load_classifier(dataset: str = "mnist5k", *, device: torch.device | str | None = None) -> torch.nn.Module:
    """The shipped classifier for `dataset` in eval mode: zoo.load(classifier_name(dataset)), cached.

    The zoo checks the checkpoint's SHA-256 on the first load from each zoo folder.

    Args:
        dataset: "mnist5k" (28x28) or "digits8" (8x8).
        device: where to put the network (default CPU).
    Returns:
        a network with forward(x) -> (B, 10) logits and features(x) -> (B, 64).
    """
    name = classifier_name(dataset)
    key = (name, str(torch.device(device or "cpu")), str(store.zoo_dir()))
    if key not in _CACHE:
        _CACHE[key] = zoo.load(name, device=device)
    return _CACHE[key]


def _check_images(images: torch.Tensor, name: str = "images") -> str:
    """Check (N, 1, 28, 28) or (N, 1, 8, 8) and return the matching dataset name."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"{name} must be a floating torch.Tensor, got {type(images).__name__}")
    sizes = {28: "mnist5k", 8: "digits8"}
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] \
            or images.shape[2] not in sizes:
        raise ValueError(f"{name} must have shape (N, 1, 28, 28) or (N, 1, 8, 8) in [-1, 1], "
                         f"got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or inf")
    return sizes[images.shape[2]]


@torch.no_grad()
def _run(images: torch.Tensor, what: str, batch_size: int = 1000) -> torch.Tensor:
    net = load_classifier(_check_images(images), device=images.device)
    fn = net.features if what == "features" else net
    return torch.cat([fn(b.float()) for b in images.split(batch_size)])


def predict(images: torch.Tensor) -> torch.Tensor:
    """Classifier labels (N,) long for images (N, 1, 28, 28) or (N, 1, 8, 8) in [-1, 1]."""
    return _run(images, "logits").argmax(1)


def digit_features(images: torch.Tensor) -> torch.Tensor:
    """Penultimate classifier features (N, 64), float64, of images (N, 1, H, W) in [-1, 1]."""
    return _run(images, "features").double()


def conditional_accuracy(images: torch.Tensor, requested_labels: torch.Tensor) -> float:
    """Fraction of samples the classifier recognises as the class they were generated for.

    Args:
        images: (N, 1, 28, 28) or (N, 1, 8, 8) samples in [-1, 1].
        requested_labels: (N,) the class each sample was conditioned on.
    """
    requested = torch.as_tensor(requested_labels)
    if requested.shape != (len(images),):
        raise ValueError(f"requested_labels must have shape ({len(images)},), got {tuple(requested.shape)}")
    return (predict(images).cpu() == requested.cpu().long()).double().mean().item()


def gaussian_fit(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D), float64, of features (N, D) with N >= 2."""
    f = np.asarray(torch.as_tensor(features, dtype=torch.float64).cpu())
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix by eigen-decomposition (negative round-off clipped)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2).

    d = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2). The cross term equals
    tr((C1 C2)^1/2) (same eigenvalues) but uses only symmetric eigen-decompositions, so unlike
    sqrtm(C1 C2) it never produces imaginary parts; round-off eigenvalues below 0 are clipped.
    """
    s1 = _sqrt_psd(cov1)
    m = s1 @ cov2 @ s1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    d = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross
    return float(max(d, 0.0))


def frechet_digit_distance(images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """Fréchet digit distance: Fréchet distance of Gaussian fits of the classifier features.

    Args:
        images_a, images_b: (N_a, 1, H, W) and (N_b, 1, H, W), same H = W (28 or 8), in [-1, 1].
        Compare FDDs only at equal sample sizes, beside `fdd_floor` at that size.
    """
    if _check_images(images_a, "images_a") != _check_images(images_b, "images_b"):
        raise ValueError(f"images_a {tuple(images_a.shape)} and images_b {tuple(images_b.shape)} differ in size")
    return frechet_distance(*gaussian_fit(digit_features(images_a)), *gaussian_fit(digit_features(images_b)))


def fdd_floor(n: int, dataset: str = "mnist5k", *, repeats: int = 5, return_std: bool = False,
              generator: torch.Generator | None = None) -> float | tuple[float, float]:
    """FDD between n real held-out and n real training images: what a perfect generator scores.

    Averaged over `repeats` random draws (features are computed once). n is at most the held-out
    size (1000 for mnist5k, 359 for digits8). The spread between draws is large (about +-1 at
    n = 1000 on MNIST-5k), so a model within the floor's spread is indistinguishable from real data.

    Returns:
        the mean, or (mean, std) when return_std.
    """
    check_choice(dataset, DATASETS, "dataset")
    held = digit_features(_LOADERS[dataset]("heldout")[0])
    train = digit_features(_LOADERS[dataset]("train")[0])
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= len(held):
        raise ValueError(f"n must be an int in [2, {len(held)}] for {dataset}, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    vals = [frechet_distance(*gaussian_fit(held[torch.randperm(len(held), generator=generator)[:n]]),
                             *gaussian_fit(train[torch.randperm(len(train), generator=generator)[:n]]))
            for _ in range(repeats)]
    return (float(np.mean(vals)), float(np.std(vals))) if return_std else float(np.mean(vals))


def evaluate(samples: torch.Tensor, requested_labels: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None, verbose: bool = True) -> dict:
    """FDD of samples against real training images, the floor at the same n, and accuracy.

    The FDD uses n = min(N, held-out size) samples and n training images, so that it and the
    floor are measured at the same n; conditional accuracy uses all N samples.

    Args:
        samples: (N, 1, H, W) generated images in [-1, 1], H = W = 28 or 8.
        requested_labels: (N,) classes the samples were conditioned on (None: unconditional).
    Returns:
        dict with n, fdd, fdd_floor, fdd_floor_std and (if labels given) conditional_accuracy.
    """
    dataset = _check_images(samples, "samples")
    train = _LOADERS[dataset]("train", device=samples.device)[0]
    n = min(len(samples), len(_LOADERS[dataset]("heldout")[0]))
    pick = torch.randperm(len(samples), generator=generator)[:n].to(samples.device)
    ref = torch.randperm(len(train), generator=generator)[:n].to(samples.device)
    floor, spread = fdd_floor(n, dataset, return_std=True, generator=generator)
    out = {"n": n, "fdd": frechet_digit_distance(samples[pick], train[ref]),
           "fdd_floor": floor, "fdd_floor_std": spread}
    if requested_labels is not None:
        out["conditional_accuracy"] = conditional_accuracy(samples, requested_labels)
    if verbose:
        acc = f", conditional accuracy {out['conditional_accuracy']:.3f}" if requested_labels is not None else ""
        print(f"FDD {out['fdd']:.2f} at n={n} (real-vs-real floor {floor:.2f} +- {spread:.2f}){acc}")
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m dpm_lab.digit_eval floor` prints the FDD floors (rebuild classifiers with dpm_lab.zoo)."""
    parser = argparse.ArgumentParser(prog="python -m dpm_lab.digit_eval")
    parser.add_argument("command", choices=["floor"])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args(argv)
    for name in args.datasets:
        sizes = [100, 359] if name == "digits8" else [100, 500, 1000]
        g = torch.Generator().manual_seed(0)
        floors = {n: fdd_floor(n, name, repeats=10, return_std=True, generator=g) for n in sizes}
        print(f"{name} FDD floor (held-out vs train, 10 draws): "
              + ", ".join(f"n={n}: {m:.2f} +- {s:.2f}" for n, (m, s) in floors.items()))


if __name__ == "__main__":
    main()
