"""The eta explorer (Ch. 9, §9.2.3): what it draws is an independent re-run of the DDIM-eta recursion on the
exact mixture (own posterior std, own noise draws), W2 by an independent optimal assignment (scipy), and the
RMS distance to the exact flow map; every control changes the picture."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

import dpm_lab as dl


@pytest.fixture(scope="module")
def eta_ex():
    return dl.widgets.EtaExplorer(n=60, n_paths=4)


def _ddim_eta(mix, sch, x, nfe, eta, generator):
    """DDIM with noise written out: x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z, with
    c = eta * std of q(x_t | x_s, x0) = eta * sigma_{s|t} sigma_t / sigma_s, sigma_{s|t}^2 = sigma_s^2 - (alpha_s/alpha_t)^2 sigma_t^2."""
    model = mix.model(sch)
    ts = [1.0 + (i / nfe) * (sch.t_eps - 1.0) for i in range(nfe + 1)]           # uniform in t
    for s, t in zip(ts[:-1], ts[1:]):
        a_s, s_s = float(sch.alpha(torch.tensor(s))), float(sch.sigma(torch.tensor(s)))
        a_t, s_t = float(sch.alpha(torch.tensor(t))), float(sch.sigma(torch.tensor(t)))
        x0, eps = model.predict(x, s, "x0"), model.predict(x, s, "eps")
        sig_st = math.sqrt(max(s_s ** 2 - (a_s / a_t) ** 2 * s_t ** 2, 0.0))
        c = eta * sig_st * s_t / s_s
        x = a_t * x0 + math.sqrt(max(s_t ** 2 - c ** 2, 0.0)) * eps
        if c > 0:
            x = x + c * torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x


def _w2(x, y):
    cost = torch.cdist(x, y).pow(2).numpy()
    r, c = linear_sum_assignment(cost)
    return math.sqrt(cost[r, c].mean())


@pytest.mark.parametrize("eta,nfe", [(0.6, 10), (1.0, 5), (0.0, 20)])
def test_eta_drawn_samples_and_w2_are_an_independent_rerun(eta_ex, eta, nfe):
    d = eta_ex.update(eta=eta, nfe=nfe)
    mine = _ddim_eta(eta_ex.mixture, eta_ex.schedule, eta_ex.x_T, nfe, eta, eta_ex.sampler_noise(eta, nfe))
    torch.testing.assert_close(d["finals"][eta], mine, rtol=1e-5, atol=1e-6)   # float time grid vs ours
    np.testing.assert_allclose(eta_ex._fin.get_offsets(), mine.numpy(), atol=1e-6)         # the drawn samples
    i = dl.widgets.ETA_VALUES.index(eta)
    assert math.isclose(eta_ex._w2_line.get_ydata()[i], _w2(mine, d["exact"]), rel_tol=1e-5)
    exact_end = eta_ex.mixture.flow_map(eta_ex.x_T, 1.0, eta_ex.schedule.t_eps, eta_ex.schedule)
    want = float((mine - exact_end).pow(2).sum(-1).mean().sqrt())
    assert math.isclose(eta_ex._dist_line.get_ydata()[i], want, rel_tol=1e-5)


def test_eta_one_is_ancestral_ddpm_and_the_exact_data_are_exact(eta_ex):
    d = eta_ex.update(eta=1.0, nfe=10)
    g = eta_ex.sampler_noise(1.0, 10)
    ddpm = dl.samplers.solve(eta_ex.model, eta_ex.x_T, dl.grids.time_grid(eta_ex.schedule, 10, "uniform"), "ddpm",
                             generator=g)
    torch.testing.assert_close(d["finals"][1.0], ddpm, rtol=1e-7, atol=1e-9)
    # the reference is a draw of p_{t_min}: its mean matches the mixture's within 4 standard errors
    sch = eta_ex.schedule
    mean = float(sch.alpha(torch.tensor(sch.t_eps))) * (eta_ex.mixture.weights[:, None] * eta_ex.mixture.means).sum(0)
    se = d["exact"].std(0) / math.sqrt(len(d["exact"]))
    assert ((d["exact"].mean(0) - mean).abs() < 4 * se).all()


def test_eta_moves_samples_away_from_the_flow_map(eta_ex):
    """At NFE 50 DDIM lands near the exact flow map of its own x_T; the distance grows with eta at every NFE."""
    for nfe in dl.widgets.ETA_NFES:
        dist = eta_ex.update(eta=0.0, nfe=nfe)["dist_to_ode"]
        assert (np.diff(dist) > 0).all()
    assert eta_ex.update(nfe=50)["dist_to_ode"][0] < 0.1


def test_eta_every_control_changes_the_picture(eta_ex):
    eta_ex.update(eta=0.0, nfe=10)
    base = eta_ex.png()
    for change in ({"eta": 0.4}, {"eta": 1.0}, {"nfe": 5}, {"nfe": 50}, {"eta": 0.2}):
        eta_ex.update(**change)
        assert eta_ex.message is None
        assert eta_ex.png() != base
        base = eta_ex.png()


def test_eta_rejects_a_value_off_its_slider(eta_ex):
    with pytest.raises(ValueError, match="eta"):
        eta_ex.update(eta=0.3)
