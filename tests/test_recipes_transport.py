"""Chapter 07 recipes: the OT-CFM twins are trained exactly like their independent-coupling twins but for the
pairing; the pairing really is the batch's OT plan; the few-step entries sample; the learned bridge is close to the
closed-form Gaussian bridge."""
import torch

import dpm_lab as dl
from dpm_lab.recipes import transport as T


def test_otcfm_specs_differ_from_their_twins_only_by_the_coupling():
    for otcfm, twin in T.OTCFM_TWINS.items():
        spec = dict(dl.zoo.get(otcfm).spec)
        assert spec.pop("coupling") == "minibatch_ot"
        assert spec == dl.zoo.get(twin).spec


def test_otcfm_loss_trains_on_ot_pairs():
    recipe = dl.zoo.get("8g_moons_otcfm")
    model = recipe.new_model()
    x0 = dl.datasets.sample_2d("moons", 64, generator=torch.Generator().manual_seed(0))
    got = recipe.loss(recipe.spec)(model, x0, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    x1 = dl.datasets.sample_2d("eight_gaussians", 64, generator=g)
    base = dl.recipes.toy._loss({**recipe.spec, "source": None})
    xt, xs = dl.ot.minibatch_ot_pairs(x0, x1)
    want = base(model, xt, None, eps=xs, generator=g)
    assert torch.allclose(got, want)
    assert dl.ot.transport_cost(xt, xs) <= dl.ot.transport_cost(x0, x1)


def test_bridge_pairs_sample_the_sinkhorn_plan():
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    plan = dl.ot.sinkhorn(x0.double(), x1.double(), 1.0, tol=1e-6).plan
    counts = torch.zeros(6, 6)
    for s in range(3000):
        a, b = T.bridge_pairs(x0, x1, 0.5, generator=torch.Generator().manual_seed(s))
        assert torch.equal(a, x0)
        j = torch.cdist(b, x1).argmin(1)
        counts[torch.arange(6), j] += 1
    freq = counts / 3000
    want = (plan / plan.sum(1, keepdim=True)).float()
    assert (freq - want).abs().max() < 5 * (0.25 / 3000) ** 0.5         # 5 binomial standard errors


def test_few_step_entries():
    entries = T.few_step_entries()
    assert {e["data"] for e in entries} == {"moons", "8g_to_moons"}
    for e in entries:
        assert e["method"] == "OT-CFM" and e["train_s"] > 0
        x = e["sample"](50, 2, torch.Generator().manual_seed(0))
        assert x.shape == (50, 2) and torch.isfinite(x).all()
        again = e["sample"](50, 2, torch.Generator().manual_seed(0))
        assert torch.equal(x, again)


def test_learned_bridge_marginal_near_the_closed_form():
    model = dl.zoo.load("gauss_sb")
    args = [torch.tensor(T.GAUSS_SB[k], dtype=torch.float64) for k in ("m0", "S0", "m1", "S1")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(args[1]).T + args[0]
    path = model.sample(x.float(), 100, generator=g).double()
    for k, t in ((50, 0.5), (100, 1.0)):
        m_t, S_t = dl.ot.gaussian_bridge_marginal(*args, T.GAUSS_SB["sigma2"], t)
        w = dl.ot.gaussian_w2(path[k].mean(0), torch.cov(path[k].T), m_t, S_t)
        assert w < 0.15, (t, w)
