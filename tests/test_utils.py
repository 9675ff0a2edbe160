"""Utilities: time broadcasting, device, seeding, threads."""
import pytest
import torch

import dpm_lab as dl


def test_expand_t_and_as_time():
    x = torch.zeros(3, 2, 4)
    assert dl.expand_t(torch.tensor([1.0, 2.0, 3.0]), x).shape == (3, 1, 1)
    assert dl.expand_t(0.5, x).dim() == 0
    with pytest.raises(ValueError, match="does not match x"):
        dl.expand_t(torch.ones(2), x)
    with pytest.raises(ValueError, match="shape \\(B,\\)"):
        dl.as_time(torch.ones(2, 2))
    assert dl.as_time(0.5, like=torch.zeros(1, dtype=torch.float32)).dtype == torch.float32


def test_device_seed_threads(monkeypatch):
    monkeypatch.delenv("DPM_LAB_THREADS", raising=False)
    assert dl.device().type in ("cpu", "cuda")
    g = dl.seed(3)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="seed"):
        dl.seed(-1)
    n = dl.choose_threads()
    assert n >= 1 and torch.get_num_threads() == n
    torch.set_num_threads(1)


def test_thread_override(monkeypatch):
    monkeypatch.setenv("DPM_LAB_THREADS", "1")
    assert dl.choose_threads() == 1
