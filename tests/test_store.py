"""The storage room: folders and their overrides, SHA-256, verify's two errors, atomic saves, manifests."""
import hashlib
import os

import pytest
import torch

from dpm_lab import store


def test_folders_default_to_the_repository_and_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DPM_LAB_DATA", raising=False)
    monkeypatch.delenv("DPM_LAB_ZOO", raising=False)
    assert (store.data_dir() / "mnist5k.npz").is_file()
    assert store.zoo_dir() == store.data_dir() / "zoo" and (store.zoo_dir() / store.MANIFEST).is_file()
    monkeypatch.setenv("DPM_LAB_DATA", str(tmp_path))
    assert store.data_dir() == tmp_path and store.zoo_dir() == tmp_path / "zoo"
    monkeypatch.setenv("DPM_LAB_ZOO", str(tmp_path / "elsewhere"))
    assert store.zoo_dir() == tmp_path / "elsewhere"
    assert store.zoo_dir(tmp_path / "given") == tmp_path / "given"        # an explicit root wins
    assert store.data_dir(tmp_path / "given") == tmp_path / "given"


def test_sha256_file_matches_hashlib_across_blocks(tmp_path):
    data = os.urandom((1 << 20) + 123)                 # more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert store.sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_verify_returns_the_path_or_says_missing_or_damaged(tmp_path):
    path = tmp_path / "x.bin"
    with pytest.raises(store.MissingFileError, match=r"x\.bin is missing; rebuild it with: make x") as err:
        store.verify(path, "0" * 64, "make x")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    path.write_bytes(b"hello")
    digest = hashlib.sha256(b"hello").hexdigest()
    assert store.verify(path, digest, "make x") == path
    path.write_bytes(b"hellp")
    with pytest.raises(store.DamagedFileError, match=r"x\.bin is damaged.*rebuild it with: make x"):
        store.verify(path, digest, "make x")


def test_save_atomic_round_trip_and_no_temporary_left(tmp_path):
    path = tmp_path / "sub" / "obj.pt"
    store.save_atomic({"a": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))
    assert os.listdir(path.parent) == ["obj.pt"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.write_atomic(path, broken)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["keep.txt"]


def test_manifest_round_trip_missing_and_damaged(tmp_path):
    assert store.read_manifest(tmp_path) == {}
    store.write_manifest(tmp_path, {"b": {"sha256": "1"}, "a": {"bytes": 2}})
    assert store.read_manifest(tmp_path) == {"a": {"bytes": 2}, "b": {"sha256": "1"}}
    assert (tmp_path / store.MANIFEST).read_text().index('"a"') < (tmp_path / store.MANIFEST).read_text().index('"b"')
    (tmp_path / store.MANIFEST).write_text("{not json")
    with pytest.raises(store.DamagedFileError, match="manifest.*damaged"):
        store.read_manifest(tmp_path)


def test_data_dir_falls_back_on_the_wheels_copy_only_without_a_checkout(tmp_path, monkeypatch):
    from dpm_lab import store
    monkeypatch.delenv("DPM_LAB_DATA", raising=False)
    assert store.data_dir() == store._REPO_DATA                       # a checkout: its data/
    packaged = tmp_path / "_course" / "data"
    packaged.mkdir(parents=True)
    monkeypatch.setattr(store, "_PACKAGED_DATA", packaged)
    monkeypatch.setattr(store, "_REPO_DATA", tmp_path / "no_checkout" / "data")
    assert store.data_dir() == packaged                              # the wheel, installed without a checkout
    monkeypatch.setenv("DPM_LAB_DATA", str(tmp_path))
    assert store.data_dir() == tmp_path                              # the environment variable still wins
