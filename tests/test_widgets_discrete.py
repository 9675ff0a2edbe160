"""Chapter 12 explorers: the drawn numbers are the exact marginals and sampler laws, every control changes the
picture, and the corruption is monotone in t."""
import numpy as np
import pytest

import dpm_lab as dl
from dpm_lab import discrete as D


@pytest.fixture(scope="module")
def corruption():
    return dl.widgets.CorruptionExplorer(n_particles=3000)


@pytest.fixture(scope="module")
def reverse():
    return dl.widgets.ReverseSamplingExplorer(learned=dl.zoo.load("masked_chain4"))


def test_corruption_marginals_are_exact_and_the_simulation_agrees(corruption):
    for kind in ("masked", "uniform"):
        d = corruption.update(kind=kind, t=0.5)
        chain = corruption.chains[kind]
        np.testing.assert_allclose(d["p_t"], (corruption.p0[kind] @ chain.closed_form(0.0, 0.5)).numpy(), atol=1e-12)
        se = np.sqrt(d["p_t"] * (1 - d["p_t"]) / 3000)
        assert (np.abs(d["simulated"] - d["p_t"]) < 5 * se + 1e-9).all()
        assert d["alpha"] == pytest.approx(chain.alpha(0.5))


def test_masking_is_monotone_in_t_and_keeps_the_tokens(corruption):
    masks = []
    for t in (0.1, 0.4, 0.7, 1.0):
        tok = corruption.update(kind="masked", t=t)["tokens"]
        hidden = tok == corruption.law.V
        assert (tok[~hidden] == corruption.x0.numpy()[~hidden]).all()      # what is shown is the data
        masks.append(hidden)
    assert all((a <= b).all() for a, b in zip(masks, masks[1:])) and masks[-1].all()


def test_every_corruption_control_changes_the_picture(corruption):
    corruption.update(kind="masked", t=0.3)
    base = corruption.png()
    for change in ({"t": 0.7}, {"kind": "uniform"}):
        corruption.update(**change)
        assert corruption.png() != base
        base = corruption.png()


def test_reverse_law_and_kl_are_the_exact_ones(reverse):
    d = reverse.update(denoiser="exact", steps=4, temperature=1.0, infill="none")
    q = D.sampler_law(D.exact_denoiser(reverse.law), reverse.law, 4)
    np.testing.assert_allclose(d["law"], q.numpy(), atol=1e-12)
    assert d["kl"] == pytest.approx(D.kl(reverse.law.probs, q))
    assert d["kl_curve"][0] == pytest.approx(D.total_correlation(reverse.law), abs=1e-9)   # one step
    d = reverse.update(infill="x2 = 2", steps=64)
    assert (reverse.law.sequences[d["law"] > 1e-12][:, 1] == 2).all() and (d["samples"][:, 1] == 2).all()
    assert d["kl"] < 1e-3


def test_every_reverse_control_changes_the_picture(reverse):
    reverse.update(denoiser="exact", steps=4, temperature=1.0, infill="none")
    base = reverse.png()
    for change in ({"steps": 16}, {"temperature": 0.7}, {"infill": "x1 = 0, x4 = 2"}, {"denoiser": "learned"}):
        reverse.update(**change)
        assert reverse.png() != base
        base = reverse.png()


def test_without_a_learned_model_the_choice_says_so():
    ex = dl.widgets.ReverseSamplingExplorer()
    assert list(ex.controls["denoiser"].options) == ["exact"]
    with pytest.raises(dl.widgets.InvalidSelection, match="no learned denoiser"):
        ex.compute("learned", 4, 1.0, "none")


def test_the_drawn_artists_are_the_data_after_every_move(corruption, reverse):
    # the explorers update their artists in place: the picture must still match the controls after each change
    for kind, t in (("masked", 0.2), ("uniform", 0.6), ("masked", 0.9), ("uniform", 0.1)):
        d = corruption.update(kind=kind, t=t)
        K = len(d["p_t"])
        heights = np.array([b.get_height() for b in corruption.fig.axes[0].patches])
        np.testing.assert_allclose(heights[:K], d["p_t"], atol=1e-12)
        assert (heights[K:] == 0).all() and corruption.fig.axes[0].get_xlim()[1] < K
        np.testing.assert_allclose(corruption.fig.axes[0].lines[0].get_ydata(), d["simulated"])
        np.testing.assert_array_equal(corruption.fig.axes[1].images[0].get_array(), d["tokens"])
        assert f"t = {t:.2f}" in corruption.fig.axes[0].get_title()
    for change in ({"steps": 1}, {"infill": "x1 = 0, x4 = 2", "temperature": 0.6}, {"denoiser": "learned", "steps": 64}):
        d = reverse.update(**change)
        top = np.argsort(-d["target"])[:12]
        bars = reverse.fig.axes[0].patches
        np.testing.assert_allclose([b.get_height() for b in bars[:12]], d["target"][top], atol=1e-12)
        np.testing.assert_allclose([b.get_height() for b in bars[12:24]], d["law"][top], atol=1e-12)
        np.testing.assert_allclose(reverse.fig.axes[1].lines[0].get_ydata(), np.maximum(d["kl_curve"], 1e-6))
        np.testing.assert_array_equal(reverse.fig.axes[2].images[0].get_array(), d["samples"])
        assert f"{d['kl']:.4f}" in reverse.fig.axes[1].get_title()
