"""The storage room: where data and checkpoints live, their SHA-256, atomic saves and manifests.

    path = dl.store.verify(dl.store.data_dir() / "mnist5k.npz", sha256, "python data/make_mnist5k.py")
    dl.store.save_atomic(obj, path)                 # torch.save to a temp file, then os.replace
    manifest = dl.store.read_manifest(dl.store.zoo_dir())

Folders: data files in $DPM_LAB_DATA (default: the repository's data/), checkpoints in
$DPM_LAB_ZOO (default: the zoo/ folder inside the data folder).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["StoreError", "MissingFileError", "DamagedFileError", "data_dir", "zoo_dir", "sha256_file", "verify",
           "save_atomic", "write_atomic", "read_manifest", "write_manifest", "MANIFEST"]

MANIFEST = "manifest.json"
_REPO_DATA = Path(__file__).resolve().parent.parent / "data"            # a checkout (or `pip install -e .`)
_PACKAGED_DATA = Path(__file__).resolve().parent / "_course" / "data"   # the wheel carries a copy here


class StoreError(ValueError):
    """A stored file is missing, damaged or does not match what reads it."""


class MissingFileError(StoreError, FileNotFoundError):
    """A stored file is missing."""


class DamagedFileError(StoreError):
    """A stored file's SHA-256 differs from the recorded one."""


def _folder(root: str | os.PathLike | None, env: str, default: Path) -> Path:
    """The folder `root`, else the environment variable `env`, else `default`."""
    return Path(root or os.environ.get(env) or default)


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root`, else $DPM_LAB_DATA, else the repository's data/ (or, installed from the wheel
    without a checkout, the copy inside the package)."""
    default = _REPO_DATA if _REPO_DATA.is_dir() or not _PACKAGED_DATA.is_dir() else _PACKAGED_DATA
    return _folder(root, "DPM_LAB_DATA", default)


def zoo_dir(root: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder: `root`, else $DPM_LAB_ZOO, else data_dir() / "zoo"."""
    return _folder(root, "DPM_LAB_ZOO", data_dir() / "zoo")


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, sha256: str, rebuild: str) -> Path:
    """Return `path` if it exists and has the recorded SHA-256, else raise a clear error.

    Args:
        path: the file.
        sha256: the recorded hex digest.
        rebuild: the command that recreates the file (quoted in the error message).
    Raises:
        MissingFileError ("missing") or DamagedFileError ("damaged"), both ValueErrors.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"file {path} is missing; rebuild it with: {rebuild}")
    got = sha256_file(path)
    if got != sha256:
        raise DamagedFileError(f"file {path} is damaged (altered or truncated): its SHA-256 is {got[:16]}..., "
                               f"the recorded one is {sha256[:16]}...; rebuild it with: {rebuild}")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call write(file) on a temporary file beside `path`, then os.replace it: never a half-written file.

    Args:
        path: the destination (its folder is created if needed).
        write: writes the content into the binary file object it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """torch.save(obj) to `path` atomically (see write_atomic)."""
    write_atomic(path, lambda f: torch.save(obj, f))


def read_manifest(folder: str | os.PathLike) -> dict:
    """The JSON manifest folder/manifest.json as a dict ({} when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DamagedFileError(f"manifest {path} is damaged (not valid JSON: {err})") from err


def write_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    """Write `manifest` as folder/manifest.json atomically (sorted keys, one-space indent)."""
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_atomic(Path(folder) / MANIFEST, lambda f: f.write(text.encode()))
