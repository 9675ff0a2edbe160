"""dl.discrete (Ch. 12) against independent routes: matrix exponentials, an RK4 master equation, Gillespie
simulation with binomial tolerances, brute-force Bayes, and exact laws enumerated over every sequence."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import discrete as D

LAW = D.MarkovLaw([0.6, 0.3, 0.1], [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], 4)


def chains():
    return [D.CTMC.masked(4), D.CTMC.masked(5, schedule="linear"), D.CTMC.uniform(3, beta=2.0),
            D.CTMC.uniform(6, schedule="linear", floor=0.05)]


@pytest.mark.parametrize("chain", chains(), ids=lambda c: f"{c.kind}-{c.K}-{c.schedule}")
def test_closed_forms_equal_the_matrix_exponential(chain):
    for s, t in [(0.0, 0.3), (0.2, 0.9), (0.5, 0.5), (0.0, 1.0)]:
        P = chain.closed_form(s, t)
        assert torch.allclose(P, chain.transition(s, t), atol=1e-12)
        assert torch.allclose(P.sum(1), torch.ones(chain.K, dtype=torch.float64), atol=1e-12)


def test_masked_and_uniform_closed_forms_as_the_book_writes_them():
    # masked: Cat(alpha_t e_x0 + (1 - alpha_t) e_mask), alpha_t = exp(-B); uniform: Cat(alpha e_x0 + (1 - alpha)/K)
    m = D.CTMC.masked(4, beta=1.5)
    a = math.exp(-1.5 * 0.4)
    assert m.closed_form(0, 0.4)[1].tolist() == pytest.approx([0, a, 0, 1 - a], abs=1e-12)
    u = D.CTMC.uniform(3, beta=1.5)
    a = math.exp(-1.5 * 3 / 2 * 0.4)
    assert u.closed_form(0, 0.4)[2].tolist() == pytest.approx([(1 - a) / 3, (1 - a) / 3, a + (1 - a) / 3], abs=1e-12)


@pytest.mark.parametrize("chain", chains(), ids=lambda c: f"{c.kind}-{c.K}-{c.schedule}")
def test_master_equation_reproduces_the_marginals_and_conserves_mass(chain):
    p0 = torch.softmax(torch.arange(chain.K, dtype=torch.float64), 0)
    times = [0.0, 0.1, 0.4, 0.8, 0.95]
    path = chain.master_equation(p0, times, substeps=40)
    for p, t in zip(path, times):
        assert torch.allclose(p, chain.marginal(p0, t), atol=1e-8)
        assert abs(float(p.sum()) - 1) < 1e-12


def test_gillespie_simulation_matches_the_marginal_within_binomial_error():
    chain = D.CTMC.uniform(4, schedule="linear", floor=0.2)
    n, t = 40_000, 0.6
    x = chain.simulate(torch.full((n,), 2), t, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(x, minlength=4).double() / n
    p = chain.marginal(torch.eye(4, dtype=torch.float64)[2], t)
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * se).all(), (freq, p)
    m = D.CTMC.masked(3)                                         # the mask absorbs: nothing leaves it
    assert (m.simulate(torch.full((100,), 2), 1.0, generator=torch.Generator().manual_seed(0)) == 2).all()


def test_a_general_rate_matrix():
    Q = torch.tensor([[-1.0, 0.7, 0.3], [0.2, -0.5, 0.3], [0.0, 1.0, -1.0]], dtype=torch.float64)
    chain = D.CTMC(Q, beta=0.8)
    p0 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # a small step is I + Q dt + O(dt^2) (§12)
    dt = 1e-4
    assert torch.allclose(chain.transition(0.3, 0.3 + dt), torch.eye(3, dtype=torch.float64) + 0.8 * Q * dt, atol=1e-7)
    with pytest.raises(ValueError, match="closed_form"):
        chain.closed_form(0, 0.5)
    assert torch.allclose(chain.master_equation(p0, [0, 0.7])[-1], chain.marginal(p0, 0.7), atol=1e-9)


@pytest.mark.parametrize("chain", chains()[:3], ids=lambda c: f"{c.kind}-{c.K}-{c.schedule}")
def test_reverse_rates_run_the_marginals_backwards(chain):
    p0 = torch.softmax(-torch.arange(chain.K, dtype=torch.float64) ** 2 / 3, 0)
    if chain.kind == "masked":                                 # data never sits on the mask
        p0 = torch.cat([p0[:-1] / p0[:-1].sum(), torch.zeros(1, dtype=torch.float64)])
    times = [0.9, 0.6, 0.3, 0.05]
    back = chain.reverse_master(p0, times, substeps=60)
    for q, t in zip(back, times):
        assert torch.allclose(q, chain.marginal(p0, t), atol=1e-7)
    R = chain.reverse_rates(chain.marginal(p0, 0.5), 0.5)
    assert torch.allclose(R.sum(1), torch.zeros(chain.K, dtype=torch.float64), atol=1e-12)
    assert (R - torch.diag(torch.diag(R)) >= 0).all()


def test_flux_is_inflow_minus_outflow_and_detailed_ratio():
    chain = D.CTMC.uniform(4, beta=1.3)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    J = chain.flux(p, 0.5)
    assert torch.allclose(J.sum(0) - J.sum(1), p @ chain.Q_at(0.5), atol=1e-14)     # master equation, dp/dt
    R = chain.reverse_rates(p, 0.5)
    # reverse rate j -> i times p(j) is the forward flux i -> j: the same probability current, run backwards
    assert torch.allclose((p[:, None] * R) - torch.diag(torch.diag(p[:, None] * R)), J.T, atol=1e-14)


def test_bayes_reverse_step_is_the_posterior():
    chain = D.CTMC.masked(4, schedule="linear")
    p_s = chain.marginal(torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64), 0.3)
    R = chain.bayes_reverse(p_s, 0.3, 0.7)
    p_t = p_s @ chain.transition(0.3, 0.7)
    assert torch.allclose(R.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(p_t @ R, p_s, atol=1e-12)                  # the reverse step maps p_t back to p_s
    joint = p_s[:, None] * chain.transition(0.3, 0.7)               # brute force: Pr(x_s = i, x_t = j)
    assert torch.allclose(R, (joint / joint.sum(0, keepdim=True)).T, atol=1e-12)


def test_markov_law_is_exact_and_its_sampler_agrees():
    assert abs(float(LAW.probs.sum()) - 1) < 1e-12 and LAW.sequences.shape == (81, 4)
    n = 60_000
    h = LAW.histogram(LAW.sample(n, generator=torch.Generator().manual_seed(0)))
    se = (LAW.probs * (1 - LAW.probs) / n).sqrt()
    assert ((h - LAW.probs).abs() < 5 * se + 1e-12).all()


def test_total_correlation_of_copied_bits_is_ln2_and_one_step_unmasking_pays_it():
    law = D.copy_law(2)
    assert D.total_correlation(law) == pytest.approx(math.log(2), abs=1e-12)
    q = D.sampler_law(D.exact_denoiser(law), law, 1)
    assert D.kl(law.probs, q) == pytest.approx(math.log(2), abs=1e-12)
    assert D.kl(LAW.probs, D.sampler_law(D.exact_denoiser(LAW), LAW, 1)) == pytest.approx(D.total_correlation(LAW), abs=1e-12)


def test_more_steps_bring_the_exact_sampler_to_the_data():
    den = D.exact_denoiser(LAW)
    kls = [D.kl(LAW.probs, D.sampler_law(den, LAW, k)) for k in (1, 2, 4, 16, 64)]
    assert all(a > b for a, b in zip(kls, kls[1:])) and kls[-1] < 1e-3
    assert kls[2] / kls[3] == pytest.approx(16, rel=0.3)          # about 1/k^2 in the number of steps


def test_sampler_law_matches_monte_carlo_of_the_sampler():
    den = D.exact_denoiser(LAW)
    n = 20_000
    x = D.sample_masked(den, n, LAW.L, LAW.V, 3, generator=torch.Generator().manual_seed(5))
    q = D.sampler_law(den, LAW, 3)
    se = (q * (1 - q) / n).sqrt()
    assert ((LAW.histogram(x) - q).abs() < 5 * se + 1e-12).all()


def test_infilling_keeps_the_given_tokens_and_samples_the_conditional():
    den = D.exact_denoiser(LAW)
    fixed = torch.tensor([-1, 2, -1, 0])
    q = D.sampler_law(den, LAW, 64, fixed=fixed)
    ok = (LAW.sequences[:, 1] == 2) & (LAW.sequences[:, 3] == 0)
    assert float(q[~ok].sum()) < 1e-12
    cond = LAW.probs * ok / (LAW.probs * ok).sum()
    assert D.kl(cond, q) < 1e-3
    x = D.sample_masked(den, 50, LAW.L, LAW.V, 4, fixed=fixed, generator=torch.Generator().manual_seed(0))
    assert (x[:, 1] == 2).all() and (x[:, 3] == 0).all()


def test_exact_denoiser_is_the_brute_force_posterior():
    den = D.exact_denoiser(LAW)
    x_t = torch.tensor([[3, 1, 3, 3], [0, 3, 3, 2], [3, 3, 3, 3]])
    out = den(x_t)
    for row, probs in zip(x_t, out):
        seen = row != 3
        keep = ((LAW.sequences == row) | ~seen).all(1)
        w = LAW.probs * keep
        w = w / w.sum()
        for i in range(4):
            want = torch.zeros(3, dtype=torch.float64).index_add_(0, LAW.sequences[:, i], w)
            assert torch.allclose(probs[i], want, atol=1e-12)


def test_masked_elbo_of_the_exact_denoiser_is_the_entropy():
    # in continuous time the bound is tight for the exact reverse process: E[NELBO] = H(data), by Monte Carlo
    g = torch.Generator().manual_seed(1)
    x0 = LAW.sample(100_000, generator=g)
    e = D.masked_elbo(D.exact_denoiser(LAW), x0, LAW.V, generator=g)
    H = float(-(LAW.probs * LAW.probs.log()).sum())
    se = float(e.std()) / math.sqrt(len(e))
    assert abs(float(e.mean()) - H) < 5 * se
    net = D.MaskedDenoiser(LAW.V, LAW.L, width=16, depth=1)
    with torch.no_grad():
        worse = D.masked_elbo(net, x0[:20_000], LAW.V, generator=g)
    assert float(worse.mean()) > H + 5 * float(worse.std()) / math.sqrt(len(worse))   # any other model pays more


def test_masked_denoiser_carries_visible_tokens_and_trains():
    torch.manual_seed(0)
    net = D.MaskedDenoiser(LAW.V, LAW.L, width=32, depth=2)
    x_t = torch.tensor([[3, 1, 3, 0]])
    p = net(x_t)
    assert p.shape == (1, 4, 3) and p[0, 1].tolist() == [0, 1, 0] and torch.allclose(p.sum(-1), torch.ones(1, 4, dtype=torch.float64))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(150):
        loss = D.masked_elbo(net, LAW.sample(256, generator=g), LAW.V, generator=g).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < first


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="sum to zero"):
        D.CTMC(torch.tensor([[-1.0, 0.5], [0.5, -0.5]]))
    with pytest.raises(ValueError, match="negative rates"):
        D.CTMC(torch.tensor([[1.0, -1.0], [0.5, -0.5]]))
    with pytest.raises(ValueError, match="square"):
        D.check_rate_matrix(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        D.check_rate_matrix(torch.tensor([[float("nan"), 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="x0 holds a state"):
        D.CTMC.masked(3).simulate(torch.tensor([0, 3]), 0.5)
    with pytest.raises(ValueError, match="mask id"):
        D.mask_tokens(torch.tensor([[0, 3]]), 0.5, 3)                 # a token equal to the mask id
    with pytest.raises(ValueError, match="t must lie"):
        D.CTMC.uniform(3).marginal(torch.tensor([1.0, 0, 0]), 1.5)
    with pytest.raises(ValueError, match="sum to one"):
        D.CTMC.uniform(3).marginal(torch.tensor([0.5, 0.1, 0.1]), 0.5)
    with pytest.raises(ValueError, match="steps"):
        D.sample_masked(D.exact_denoiser(LAW), 2, 4, 3, 0)
    with pytest.raises(ValueError, match="fixed"):
        D.sample_masked(D.exact_denoiser(LAW), 2, 4, 3, 2, fixed=torch.tensor([0, 5, -1, -1]))
    with pytest.raises(ValueError, match="forward"):
        D.CTMC.uniform(3).transition(0.8, 0.2)
    assert dl.discrete is D


def test_more_bad_input_from_an_outside_reading():
    with pytest.raises(ValueError, match="x_t holds a state"):
        D.MaskedDenoiser(3, 4)(torch.tensor([[0, 1, 5, 2]]))            # beyond the mask id
    with pytest.raises(ValueError, match="x_t holds a state"):
        D.UniformDenoiser(3, 4)(torch.tensor([[0, 1, 3, 2]]), 0.5)      # no mask token in uniform diffusion
    with pytest.raises(TypeError, match="integer tokens"):
        D.mask_tokens(torch.tensor([[0.0, 1.0]]), 0.5, 3)
    with pytest.raises(ValueError, match="non-negative"):
        D.kl(torch.tensor([0.5, 0.5]), torch.tensor([1.5, -0.5]))


def test_masked_elbo_is_exactly_tight_by_enumeration():
    # independent of Monte Carlo: sum over the 2^L mask patterns, weight int_0^1 t^(m-1) (1-t)^(L-m) dt = B(m, L-m+1)
    def nelbo(den):
        total = 0.0
        for bits in range(1, 2 ** LAW.L):
            hide = torch.tensor([(bits >> i) & 1 for i in range(LAW.L)], dtype=torch.bool)
            m = int(hide.sum())
            w = math.gamma(m) * math.gamma(LAW.L - m + 1) / math.gamma(LAW.L + 1)
            with torch.no_grad():
                probs = den(torch.where(hide, LAW.mask, LAW.sequences)).double()
            logp = probs.gather(-1, LAW.sequences[..., None]).squeeze(-1).log()
            total += w * float((LAW.probs * -(logp * hide).sum(1)).sum())
        return total
    H = float(-(LAW.probs * LAW.probs.log()).sum())
    assert abs(nelbo(D.exact_denoiser(LAW)) - H) < 1e-10
    torch.manual_seed(0)
    assert nelbo(D.MaskedDenoiser(LAW.V, LAW.L, width=16, depth=1)) > H + 0.1


# -- uniform diffusion on sequences --------------------------------------------------------------------------------
def test_uniform_tokens_follow_the_closed_form():
    n, t = 60_000, 0.4
    x = D.uniform_tokens(torch.full((n, 1), 2), t, 3, generator=torch.Generator().manual_seed(0))[:, 0]
    freq = torch.bincount(x, minlength=3).double() / n
    want = torch.tensor([t / 3, t / 3, 1 - t + t / 3], dtype=torch.float64)       # Cat(alpha e_2 + (1 - alpha)/3)
    assert ((freq - want).abs() < 5 * (want * (1 - want) / n).sqrt()).all()


def test_uniform_reverse_kernel_is_the_bayes_posterior_and_consistent():
    V, s, t = 3, 0.7, 0.3
    K = D._uniform_reverse_kernel(V, s, t)
    eye = torch.eye(V, dtype=torch.float64)
    kern = lambda a: a * eye + (1 - a) / V                                         # Pr(x = w | x0 = v) at signal a
    step = kern((1 - s) / (1 - t))                                                 # Pr(x_s | x_t)
    for u in range(V):
        for v in range(V):
            joint = kern(1 - t)[v] * step[:, u]                                     # Pr(x_t = w | v) Pr(x_s = u | x_t = w)
            assert torch.allclose(K[u, v], joint / joint.sum(), atol=1e-14)
    # averaging the kernel over x_s | x0 gives x_t | x0: the marginals are kept
    assert torch.allclose(torch.einsum("vu,uvw->vw", kern(1 - s), K), kern(1 - t), atol=1e-14)


def test_exact_uniform_denoiser_depends_on_t_and_is_the_brute_force_posterior():
    den = D.exact_uniform_denoiser(LAW)
    x_t = torch.tensor([[2, 2, 0, 1]])
    early, late = den(x_t, 0.1), den(x_t, 0.9)
    assert not torch.allclose(early, late)
    lik = torch.where(LAW.sequences == x_t, 0.9 + 0.1 / 3, 0.1 / 3).prod(1)
    w = LAW.probs * lik / (LAW.probs * lik).sum()
    want = torch.zeros(3, dtype=torch.float64).index_add_(0, LAW.sequences[:, 2], w)
    assert torch.allclose(early[0, 2], want, atol=1e-12)


def test_uniform_sampler_law_matches_its_monte_carlo_and_converges():
    den = D.exact_uniform_denoiser(LAW)
    q = D.uniform_sampler_law(den, LAW, 3)
    n = 20_000
    h = LAW.histogram(D.sample_uniform(den, n, LAW.L, LAW.V, 3, generator=torch.Generator().manual_seed(2)))
    assert ((h - q).abs() < 5 * (q * (1 - q) / n).sqrt() + 1e-12).all()
    kls = [D.kl(LAW.probs, D.uniform_sampler_law(den, LAW, k)) for k in (1, 4, 16, 64)]
    assert kls[0] == pytest.approx(D.total_correlation(LAW), abs=1e-9) and all(a > b for a, b in zip(kls, kls[1:]))
    assert kls[-1] < 1e-3
