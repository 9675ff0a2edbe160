"""Tests of dpm_lab.notebook: the first cell of every chapter (seed, threads, plotting defaults)."""
import matplotlib
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab import notebook


@pytest.fixture(autouse=True)
def _restore_threads_and_rc():
    threads = torch.get_num_threads()
    rc = matplotlib.rcParams.copy()
    yield
    torch.set_num_threads(threads)
    matplotlib.rcParams.update(rc)


def test_package_face():
    assert dl.setup_notebook is notebook.setup_notebook and dl.choose_threads is notebook.choose_threads
    assert not hasattr(dl.utils, "setup_notebook") and not hasattr(dl.utils, "choose_threads")


@pytest.mark.parametrize("forced", ["1", "2"])
def test_thread_override(monkeypatch, forced):
    monkeypatch.setenv("DPM_LAB_THREADS", forced)
    monkeypatch.setattr(notebook, "_mlp_step_ms", lambda *a: pytest.fail("an override must not measure"))
    assert notebook.choose_threads() == int(forced) == torch.get_num_threads()


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_bad_thread_override_is_named(monkeypatch, bad):
    monkeypatch.setenv("DPM_LAB_THREADS", bad)
    with pytest.raises(ValueError, match="DPM_LAB_THREADS must be a positive integer"):
        notebook.choose_threads()


@pytest.mark.parametrize("one_ms, many_ms, want", [(1.0, 5.0, 1), (5.0, 1.0, 3), (2.0, 2.0, 1)])
def test_choose_threads_keeps_the_faster(monkeypatch, capsys, one_ms, many_ms, want):
    monkeypatch.delenv("DPM_LAB_THREADS", raising=False)
    torch.set_num_threads(3)
    monkeypatch.setattr(notebook, "_mlp_step_ms", lambda threads, steps=10: one_ms if threads == 1 else many_ms)
    assert notebook.choose_threads(verbose=True) == want == torch.get_num_threads()
    assert f"1 thread {one_ms:.2f} ms, 3 threads {many_ms:.2f} ms" in capsys.readouterr().out


def test_mlp_step_is_timed_and_threads_restored():
    torch.set_num_threads(1)
    ms = notebook._mlp_step_ms(2, steps=2)
    assert 0 < ms < 10_000 and torch.get_num_threads() == 1


def test_setup_notebook_seeds_and_sets_defaults(monkeypatch, capsys):
    monkeypatch.setenv("DPM_LAB_THREADS", "1")
    torch.randn(3)
    info = dl.setup_notebook(5)
    a, b = torch.randn(3), np.random.rand()
    assert torch.equal(a, torch.randn(3, generator=torch.Generator().manual_seed(5)))
    assert b == np.random.RandomState(5).rand()
    assert info == {"device": str(dl.device()), "threads": 1, "torch": torch.__version__.split("+")[0]}
    assert matplotlib.rcParams["figure.figsize"] == [6.0, 4.0] and matplotlib.rcParams["axes.grid"]
    assert capsys.readouterr().out == f"dpm_lab ready: device={info['device']}\n"


def test_setup_notebook_quiet_and_without_threads(monkeypatch, capsys):
    monkeypatch.setattr(notebook, "choose_threads", lambda *a: pytest.fail("threads=False must not measure"))
    torch.set_num_threads(2)
    assert dl.setup_notebook(0, threads=False, verbose=False)["threads"] == 2
    assert capsys.readouterr().out == ""


def test_figures_are_inline_in_a_kernel_whatever_mplbackend_says(monkeypatch):
    import IPython

    from dpm_lab import notebook

    calls = []
    ZMQInteractiveShell = type("ZMQInteractiveShell", (), {"run_line_magic": lambda self, *a: calls.append(a)})
    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    assert notebook._inline_figures() and calls == [("matplotlib", "inline")]
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)        # a plain script: nothing changes
    assert not notebook._inline_figures()
