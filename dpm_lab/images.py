"""Small image datasets: tensors (N, C, H, W) in [-1, 1] out, nothing downloaded at run time.

    x, y = dl.images.load_mnist5k("train")          # (4000, 1, 28, 28) float32, (4000,) long
    x, y = dl.images.load_digits8("heldout")        # (359, 1, 8, 8): scikit-learn's 8x8 digits
    x, y, classes = dl.images.load_image_folder("my_faces/", size=32)
    plt.imshow(dl.images.to_display(x)[0], cmap="gray", vmin=0, vmax=1)

Every set has one FIXED train / held-out split: 20% of each class is held out, chosen with
NumPy's legacy `RandomState(0)` (whose stream NumPy promises never to change), so the split is
the same on every machine and version. Generative models train on "train"; the evaluation
classifier of `dl.digit_eval` trains on "heldout", so it never sees the generator's data.

Data files live in `dl.store.data_dir()` (the repository's data/ folder, or $DPM_LAB_DATA) and
are checked against their recorded SHA-256 (`dl.store.verify`) before use.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from . import store
from .utils import check_choice

__all__ = ["SPLITS", "HELDOUT_FRACTION", "SPLIT_SEED", "split_indices",
           "load_mnist5k", "load_digits8", "load_image_folder", "load_npz", "to_unit", "from_unit", "to_display"]

SPLITS = ("train", "heldout", "all")
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0
# SHA-256 of scikit-learn's digits as uint8 bytes (images (1797, 8, 8) then labels (1797,))
DIGITS8_CONTENT_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
MNIST5K_REBUILD = "python data/make_mnist5k.py"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_CACHE: dict = {}


def split_indices(labels: np.ndarray | torch.Tensor, split: str, *,
                  heldout_fraction: float = HELDOUT_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """Indices of the fixed stratified split: round(20%) of each class held out, rest train.

    Classes are visited in increasing order, each drawing a permutation from one
    `np.random.RandomState(seed)`; then all indices are put in one fixed shuffled order (so no
    split comes sorted by class) and filtered by split.

    Args:
        labels: (N,) integer class labels.
        split: "train", "heldout" or "all".
    Returns:
        (n_split,) int64 indices into labels.
    """
    check_choice(split, SPLITS, "split")
    labels = np.asarray(labels)
    rs = np.random.RandomState(seed)
    heldout = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(heldout_fraction * len(idx)))
        heldout[idx[rs.permutation(len(idx))[:k]]] = True
    order = rs.permutation(len(labels))
    if split == "all":
        return order.astype(np.int64)
    keep = heldout[order] if split == "heldout" else ~heldout[order]
    return order[keep].astype(np.int64)


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")


def _to_tensor(images: np.ndarray, scale: float, normalize: bool, dtype, device) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) array of values in [0, scale] -> float tensor in [-1, 1] or [0, 1]."""
    _check_dtype(dtype)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float64) / scale)
    if x.dim() == 3:
        x = x[:, None]
    if normalize:
        x = 2 * x - 1
    return x.to(device=device, dtype=dtype)


def _select(images, labels, split, normalize, dtype, device, scale):
    idx = split_indices(labels, split)
    x = _to_tensor(images[idx], scale, normalize, dtype, device)
    return x, torch.from_numpy(labels[idx].astype(np.int64)).to(device)


def _mnist5k_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Verified uint8 arrays of MNIST-5k (cached per file path and modification time)."""
    record_path = store.data_dir() / "mnist5k.json"
    if not record_path.is_file():
        raise store.MissingFileError(f"provenance record {record_path} is missing; rebuild it with: {MNIST5K_REBUILD}")
    key = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
    if key not in _CACHE:
        store.verify(path, json.loads(record_path.read_text())["sha256"], MNIST5K_REBUILD)
        with np.load(path, allow_pickle=False) as f:
            _CACHE[key] = (f["images"], f["labels"])
    return _CACHE[key]


def load_mnist5k(split: str = "train", *, normalize: bool = True, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None, path: str | Path | None = None):
    """5,000 MNIST digits (500 per class), 28x28 grayscale, with the fixed 80/20 split.

    Train: 4000 images (400 per class); held-out: 1000 (100 per class). Source, checksum and
    license (CC BY-SA 3.0, Y. LeCun and C. Cortes) are recorded in data/mnist5k.json.

    Args:
        split: "train", "heldout" or "all".
        normalize: True -> pixels in [-1, 1] (the diffusion convention); False -> [0, 1].
        dtype, device: of the returned images.
        path: another copy of mnist5k.npz (it must match the recorded SHA-256).
    Returns:
        images (N, 1, 28, 28) and labels (N,) long.
    """
    path = Path(path) if path is not None else store.data_dir() / "mnist5k.npz"
    images, labels = _mnist5k_arrays(path)
    return _select(images, labels, split, normalize, dtype, device, 255.0)


def _digits8_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 (values 0..16), checked against the recorded digest."""
    if "digits8" not in _CACHE:
        from sklearn.datasets import load_digits

        d = load_digits()
        images, labels = d.images.astype(np.uint8), d.target.astype(np.uint8)
        digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
        if digest != DIGITS8_CONTENT_SHA256 or not np.array_equal(images, d.images):
            raise ValueError("scikit-learn's digits data differ from the copy dpm_lab was built with "
                             f"(SHA-256 {digest[:16]}...); reinstall scikit-learn")
        _CACHE["digits8"] = (images, labels)
    return _CACHE["digits8"]


def load_digits8(split: str = "train", *, normalize: bool = True, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
    """scikit-learn's 1,797 8x8 digits (UCI optical digits, 17 grey levels) with the fixed 80/20 split.

    Loaded from scikit-learn's own offline copy; train: 1438 images, held-out: 359.

    Args:
        split: "train", "heldout" or "all".
        normalize: True -> pixels in [-1, 1]; False -> [0, 1] (raw values 0..16 divided by 16).
        dtype, device: of the returned images.
    Returns:
        images (N, 1, 8, 8) and labels (N,) long.
    """
    images, labels = _digits8_arrays()
    return _select(images, labels, split, normalize, dtype, device, 16.0)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_image(file: Path, size, grayscale: bool) -> np.ndarray:
    """One image file -> uint8 array (H, W) or (3, H, W), resized to size=(H, W) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im = im.convert("L" if grayscale else "RGB")
            if size is not None:
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"could not read image {file}: {err}") from err
    return arr if grayscale else arr.transpose(2, 0, 1)


def load_image_folder(path: str | Path, *, size: int | tuple[int, int] | None = None, grayscale: bool = True,
                      normalize: bool = True, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None):
    """Your own images: one sub-folder per class (path/cat/*.png, path/dog/*.jpg), or a flat folder.

    Classes are the sub-folder names in sorted order (a flat folder is one class, label 0).

    Args:
        path: the folder.
        size: resize every image to (size, size) or (H, W); None requires all images to share a size.
        grayscale: True -> 1 channel, False -> 3 (RGB; transparency is dropped).
        normalize: True -> pixels in [-1, 1]; False -> [0, 1].
    Returns:
        images (N, C, H, W), labels (N,) long, and the list of class names.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"path {folder} is not an existing folder")
    subdirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and _image_files(d)]
    if subdirs and _image_files(folder):
        raise ValueError(f"path {folder} mixes images and class sub-folders; move the loose images into a sub-folder")
    groups = [(d.name, _image_files(d)) for d in subdirs] or [(folder.name, _image_files(folder))]
    if not groups[0][1]:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder} or its sub-folders")
    if isinstance(size, int):
        size = (size, size)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be a positive int or a pair (H, W), got {size!r}")
    arrays, labels = [], []
    for label, (_, files) in enumerate(groups):
        for file in files:
            arr = _read_image(file, size, grayscale)
            if arrays and arr.shape != arrays[0].shape:
                raise ValueError(f"image {file} has shape {arr.shape[-2:]}, others {arrays[0].shape[-2:]}; "
                                 f"pass size=(H, W) to resize them all")
            arrays.append(arr)
            labels.append(label)
    x = _to_tensor(np.stack(arrays), 255.0, normalize, dtype, device)
    return x, torch.tensor(labels, dtype=torch.long, device=device), [name for name, _ in groups]


def _to_nchw(arr: np.ndarray, layout: str) -> np.ndarray:
    if arr.ndim == 3:
        return arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W), (N, C, H, W) or (N, H, W, C), got {arr.shape}")
    if layout == "auto":
        layout = "NCHW" if arr.shape[1] in (1, 3) else "NHWC" if arr.shape[-1] in (1, 3) else ""
        if not layout:
            raise ValueError(f"cannot tell the channel axis of shape {arr.shape}; pass layout='NCHW' or 'NHWC'")
    return arr if layout == "NCHW" else arr.transpose(0, 3, 1, 2)


def load_npz(path: str | Path, key: str = "images", *, labels_key: str | None = "labels",
             layout: str = "auto", sha256: str | None = None, normalize: bool = True,
             dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
    """Images from a .npz file (for sets too big for a folder of PNGs).

    Integer pixels are read as 0..255; float pixels must already lie in [0, 1].

    Args:
        path: the .npz file.
        key: the array of images, shaped (N, H, W), (N, C, H, W) or (N, H, W, C).
        labels_key: an (N,) integer array of labels, if present (None: do not look).
        layout: "auto", "NCHW" or "NHWC" for 4-d arrays.
        sha256: if given, the file must have this SHA-256.
        normalize: True -> pixels in [-1, 1]; False -> [0, 1].
    Returns:
        images (N, C, H, W) and labels (N,) long, or None when there are none.
    """
    check_choice(layout, ("auto", "NCHW", "NHWC"), "layout")
    path = Path(path)
    if sha256 is not None:
        store.verify(path, sha256, "restore the file from where you got it")
    elif not path.is_file():
        raise FileNotFoundError(f"npz file {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as f:
            names = f.files
            arrays = {k: f[k] for k in names if k in (key, labels_key)}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"file {path} could not be read as .npz (damaged?): {err}") from err
    if key not in arrays:
        raise ValueError(f"key {key!r} not in {path}; it holds {', '.join(names)}")
    arr, labels = arrays[key], arrays.get(labels_key)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(f"integer images must lie in 0..255, got {arr.min()}..{arr.max()}")
        scale = 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.min() < -1e-6 or arr.max() > 1 + 1e-6:
            raise ValueError(f"float images must lie in [0, 1], got {arr.min():.3g}..{arr.max():.3g}; rescale them")
        scale = 1.0
    else:
        raise TypeError(f"images must be an integer or float array, got {arr.dtype}")
    x = _to_tensor(_to_nchw(arr, layout).clip(0, scale), scale, normalize, dtype, device)
    if labels is None:
        return x, None
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels {labels_key!r} must be ({len(x)},) integers, got {labels.dtype} {labels.shape}")
    return x, torch.from_numpy(labels.astype(np.int64)).to(device)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Map images from [-1, 1] to [0, 1] for display, clamping overshoot: (x + 1) / 2."""
    return ((x + 1) / 2).clamp(0, 1)


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """Map images from [0, 1] to [-1, 1]: 2 x - 1."""
    return 2 * x - 1


def to_display(x: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> NumPy (N, H, W) (C = 1) or (N, H, W, C) in [0, 1] for imshow."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a tensor of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    u = to_unit(x.detach().float().cpu())
    return u[:, 0].numpy() if u.shape[1] == 1 else u.permute(0, 2, 3, 1).numpy()
