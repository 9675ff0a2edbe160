"""dpm_lab.distill: the chapter's identities against independent routes (the sampler's DDIM step, the exact
mixture's flow map, autograd of a closed-form KL, Monte Carlo with tolerances from the sample size)."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import distill

D64 = torch.float64
MIX = dl.gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.2, -0.3]], stds=[0.3, 0.5])
SCHEDULES = {"vp": dl.schedules.get_schedule("vp"), "flow": dl.schedules.get_schedule("flow"),
             "cosine": dl.schedules.get_schedule("cosine")}


def _x(n=64, seed=0, d=2):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=D64)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_ddim_jump_is_the_samplers_ddim_step(name):
    model = MIX.model(SCHEDULES[name])
    x = _x()
    for s, t in ((0.9, 0.5), (0.3, 0.01), (1.0, 0.6)):
        want = dl.samplers.ddim_step(model, x, s, t)[0]
        assert torch.allclose(distill.ddim_jump(model, x, s, t), want, atol=1e-12)
    # per-sample times equal the scalar step row by row
    s, t = torch.tensor([0.9, 0.4], dtype=D64), torch.tensor([0.5, 0.1], dtype=D64)
    got = distill.ddim_jump(model, x[:2], s, t)
    for i in range(2):
        assert torch.allclose(got[i], dl.samplers.ddim_step(model, x[i:i + 1], float(s[i]), float(t[i]))[0][0], atol=1e-12)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_pd_target_identity_one_student_step_is_two_teacher_steps(name):
    """§10.3.1: with x0_hat = x~, one DDIM step s -> t lands exactly where the teacher's two steps land."""
    teacher = MIX.model(SCHEDULES[name])
    x_s = _x(seed=1) * 1.3
    for s, u, t in ((1.0, 0.7, 0.4), (0.6, 0.35, 0.1), (0.2, 0.1, 0.001)):
        two = dl.samplers.ddim_step(teacher, dl.samplers.ddim_step(teacher, x_s, s, u)[0], u, t)[0]
        x_tilde = distill.pd_teacher_target(teacher, x_s, s, u, t)
        co_s, co_t = teacher.schedule.coeffs(s), teacher.schedule.coeffs(t)
        eps_hat = (x_s - co_s.alpha * x_tilde) / co_s.sigma
        one = co_t.alpha * x_tilde + co_t.sigma * eps_hat
        assert (one - two).abs().max() < 1e-12
        # a different target (the teacher's own one-step x0) does not land there
        assert (teacher.predict(x_s, s, "x0") - x_tilde).abs().max() > 1e-3


def test_pd_loss_is_zero_for_the_oracle_student_and_positive_for_the_teacher():
    sched = SCHEDULES["vp"]
    teacher = MIX.model(sched)

    class Oracle(dl.param.Model):       # x0 prediction = the PD target itself
        schedule, kind = sched, "x0"

        def raw(self, x, s, c=None):
            return distill.pd_teacher_target(teacher, x, s, s - 0.2, s - 0.4)

    x = _x(seed=2)
    s = torch.full((64,), 0.8, dtype=D64)
    assert distill.pd_loss(Oracle(), teacher, x, s, s - 0.2, s - 0.4).abs().max() < 1e-20
    assert distill.pd_loss(teacher, teacher, x, s, s - 0.2, s - 0.4).mean() > 1e-4


def test_pd_grid_is_nested_and_rejects_steps_that_do_not_divide():
    sched = SCHEDULES["vp"]
    full = distill.pd_grid(sched, 64, 64)
    for n in (32, 8, 1):
        g = distill.pd_grid(sched, 64, n)
        assert len(g) == n + 1 and set(g) <= set(full) and g[0] == full[0] and g[-1] == full[-1]
    with pytest.raises(ValueError, match="must divide"):
        distill.pd_grid(sched, 64, 24)
    with pytest.raises(ValueError, match="n must be an int"):
        distill.pd_grid(sched, 64, 0)


def test_teacher_of_another_schedule_or_shape_is_refused():
    a, b = MIX.model(SCHEDULES["vp"]), MIX.model(SCHEDULES["flow"])
    with pytest.raises(ValueError, match="schedule"):
        distill.check_teacher(a, b)
    with pytest.raises(ValueError, match="schedule"):
        distill.pd_loss(a, b, _x(4), 0.8, 0.6, 0.4)
    b.shape = (1, 8, 8)
    with pytest.raises(ValueError, match="shape"):
        distill.check_teacher(MIX.model(SCHEDULES["flow"]), b, shape=(2,))


def test_kd_loss_of_the_exact_flow_map_is_zero():
    """The KD loss with G = the oracle map (the mixture's exact PF-ODE flow map) vanishes (§10.1.2)."""
    sched = SCHEDULES["vp"]
    x_T = _x(32, seed=3)
    t_end = sched.t_eps
    exact = lambda x: MIX.flow_map(x, 1.0, t_end, sched)           # noqa: E731
    ends = dl.samplers.solve(MIX.model(sched), x_T, [1.0, t_end], "dop853")   # an independent high-accuracy solver
    assert float(distill.kd_loss(exact, x_T, ends)) < 1e-12
    assert float(distill.kd_loss(lambda x: x, x_T, ends)) > 0.1     # a wrong map is not
    # KD is the oracle loss at (s, t) = (T, t_end)
    oracle = distill.oracle_loss(lambda x, s, t: exact(x), lambda x, s, t: MIX.flow_map(x, s, t, sched), x_T, 1.0, t_end)
    assert float(oracle) < 1e-20


def test_kl_gradient_of_a_gaussian_generator_matches_the_vsd_formula():
    """Prop. §10.2.1: E[alpha (s_theta - s_data)^T dG/dtheta] = grad KL(p_t^theta || p_t), Monte Carlo within 5 SE."""
    g = torch.Generator().manual_seed(4)
    mu = torch.tensor([0.7, -0.4, 1.1], dtype=D64, requires_grad=True)
    scale = torch.tensor(0.6, dtype=D64, requires_grad=True)
    m, v = torch.tensor([-0.2, 0.3, 0.5], dtype=D64), 1.7
    for alpha, sigma in ((0.9, 0.44), (0.5, 0.87)):
        kl = distill.gaussian_kl(alpha * mu, alpha ** 2 * scale ** 2 + sigma ** 2, alpha * m,
                                 torch.tensor(alpha ** 2 * v + sigma ** 2, dtype=D64))
        d_mu, d_scale = torch.autograd.grad(kl, (mu, scale))
        mc_mu, mc_scale, se = distill.gaussian_vsd_gradient(mu.detach(), scale.detach(), m, v, alpha, sigma, 200_000,
                                                            generator=g)
        assert ((mc_mu - d_mu).abs() < 5 * se["mu"]).all(), (mc_mu, d_mu)
        assert (mc_scale - d_scale).abs() < 5 * se["scale"], (mc_scale, d_scale)
        assert d_mu.abs().max() > 10 * se["mu"].max()      # the test can fail: the gradient is not ~0


def test_the_generators_score_term_has_zero_mean():
    g = torch.Generator().manual_seed(5)
    mu, scale = torch.tensor([0.7, -0.4], dtype=D64), torch.tensor(0.6, dtype=D64)
    mean, se = distill.gaussian_score_term(mu, scale, 0.8, 0.6, 200_000, generator=g)
    assert (mean.abs() < 5 * se).all(), (mean, se)
    assert se.max() < 0.01                                  # tight enough to see a nonzero mean


def test_distribution_matching_loss_has_the_direction_as_gradient():
    x = _x(8, seed=6).requires_grad_(True)
    d = _x(8, seed=7)
    (grad,) = torch.autograd.grad(distill.distribution_matching_loss(x, d), x)
    assert torch.allclose(grad, d / 8)


def test_the_two_weights_are_the_score_difference_rescaled_and_sds_is_the_dirac_case():
    sched = SCHEDULES["vp"]
    real, fake = MIX.model(sched), dl.gmm.GaussianMixture([1.0], [[0.2, 0.1]], stds=[0.8]).model(sched)
    x_t, t = _x(16, seed=8), torch.full((16,), 0.4, dtype=D64)
    co = sched.coeffs(0.4)
    score_diff = co.alpha * (fake.predict(x_t, t, "score") - real.predict(x_t, t, "score"))   # w = 1
    x0 = distill.vsd_direction(fake, real, x_t, t, weight="x0")
    eps = distill.vsd_direction(fake, real, x_t, t, weight="eps")
    assert torch.allclose(x0, score_diff * co.sigma ** 2 / co.alpha ** 2, atol=1e-12)
    assert torch.allclose(eps, score_diff * co.sigma / co.alpha, atol=1e-12)
    # SDS: the fake score replaced by the Dirac's, -eps/sigma at x_t = alpha G + sigma eps
    G, e = _x(16, seed=9), _x(16, seed=10)
    x_t = co.alpha * G + co.sigma * e
    dirac = co.alpha * (-e / co.sigma - real.predict(x_t, t, "score"))
    assert torch.allclose(distill.sds_direction(real, x_t, t, e, weight="eps"), dirac * co.sigma / co.alpha, atol=1e-12)
    assert torch.allclose(distill.sds_direction(real, x_t, t, e, weight="x0"), G - real.predict(x_t, t, "x0"), atol=1e-12)


def test_vsd_direction_passes_the_labels_to_both_scores():
    """A label-conditional generator: fake = the class-conditional mixture, real = its CFG at omega 2 (exact)."""
    sched, mix = SCHEDULES["vp"], dl.datasets.eight_gaussians_mixture()
    fake = mix.model(sched)
    real = dl.guidance.CFG(fake, 2.0, mix.n_classes)
    x_t, t, c = _x(16, seed=11), torch.full((16,), 0.5, dtype=D64), torch.arange(16) % 8
    d = distill.vsd_direction(fake, real, x_t, t, "x0", c)
    assert torch.allclose(d, fake.predict(x_t, t, "x0", c) - real.predict(x_t, t, "x0", c), atol=1e-12)
    assert (d - distill.vsd_direction(fake, real, x_t, t, "x0", (c + 1) % 8)).abs().max() > 1e-2
    assert distill.vsd_direction(fake, fake, x_t, t, "eps", c).abs().max() == 0


def test_one_step_generator_runs_in_the_sampling_driver_with_one_evaluation():
    gen = distill.OneStepGenerator(SCHEDULES["vp"]).double()
    z = _x(10, seed=11)
    recs = list(dl.samplers.sample(gen, z, [1.0, 0.0], "ddim"))
    assert recs[-1].nfe == 1
    assert torch.allclose(recs[-1].x, gen(z), atol=1e-12)


def test_guided_student_copied_from_teacher_is_the_conditional_model_and_checks_omega():
    teacher = dl.zoo.load("8g_cond")
    student = distill.GuidedStudent(teacher.schedule, teacher.kind, 8, (1.0, 4.0)).copy_teacher(teacher.net)
    x, t, c = _x(6, seed=12).float(), 0.5, torch.arange(6) % 8
    for om in (1.0, 3.0):
        assert torch.allclose(student.at(om).predict(x, t, "velocity", c), teacher.predict(x, t, "velocity", c), atol=1e-6)
    with pytest.raises(ValueError, match="trained range"):
        student.at(5.0)
    with pytest.raises(ValueError, match="trained range"):
        student(x, t, c, torch.full((6,), 0.5))
    # the per-sample omega target equals CFG at each scalar omega
    om = torch.tensor([1.0, 2.0, 3.0, 1.5, 2.5, 4.0])
    got = distill.guided_target(teacher, x, t, c, om, 8)
    for i in range(6):
        want = dl.guidance.CFG(teacher, float(om[i]), 8).predict(x[i:i + 1], t, "velocity", c[i:i + 1])
        assert torch.allclose(got[i], want[0], atol=1e-5)


def _small_unet_teacher(seed=0):
    torch.manual_seed(seed)
    net = dl.nets.UNet(1, 8, (1, 2), n_classes=3, emb=16, groups=4)
    for p in net.parameters():                       # make every weight count (GroupNorm/zero inits otherwise)
        p.data.add_(0.05 * torch.randn_like(p))
    return dl.nets.Predictor(net, dl.schedules.get_schedule("vp"), "v")


def test_guided_unet_student_starts_as_the_conditional_teacher_and_calls_the_net_once():
    teacher = _small_unet_teacher()
    stu = distill.GuidedUNetStudent.from_teacher(teacher, (1.0, 4.0))
    x, c = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        for om in (1.0, 2.5, 4.0):
            assert torch.allclose(stu.at(om).predict(x, 0.4, "x0", c), teacher.predict(x, 0.4, "x0", c), atol=1e-6)
        # network rows evaluated: one per sample and evaluation for the student; CFG adds the null-label rows
        rows = {"stu": 0, "teacher": 0}

        def counter(key):
            return lambda mod, args, out: rows.__setitem__(key, rows[key] + args[0].shape[0])
        h1, h2 = stu.net.register_forward_hook(counter("stu")), teacher.net.register_forward_hook(counter("teacher"))
        dl.samplers.solve(stu.at(2.0), x, nfe=4, method="dpmpp_2m", c=c)
        dl.samplers.solve(dl.guidance.CFG(teacher, 2.0, 3), x, nfe=4, method="dpmpp_2m", c=c)
        h1.remove(), h2.remove()
    assert rows == {"stu": 4 * 6, "teacher": 2 * 4 * 6}


def test_guided_unet_student_maps_omega_to_the_unit_interval_and_refuses_outside_its_range():
    teacher = _small_unet_teacher()
    stu = distill.GuidedUNetStudent.from_teacher(teacher, (1.0, 4.0))
    seen = []
    h = stu.net.embed.register_forward_hook(lambda mod, args, out: seen.append(args[3].clone()))
    with torch.no_grad():
        stu(torch.zeros(3, 1, 8, 8), 0.5, torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.5, 4.0]))
    h.remove()
    assert torch.allclose(seen[0].flatten(), torch.tensor([0.0, 0.5, 1.0]))
    for bad in (0.5, 4.5, float("nan")):
        with pytest.raises(ValueError, match=r"trained range \[1, 4\]"):
            stu.at(bad)
    with pytest.raises(TypeError, match="class-conditional"):
        distill.GuidedUNetStudent.from_teacher(MIX.model(SCHEDULES["vp"]), (1.0, 4.0))
    with pytest.raises(ValueError, match="extra = 1"):
        distill.GuidedUNetStudent(teacher.net, teacher.schedule, "v", 3, (1.0, 4.0))
    with pytest.raises(ValueError, match="lo < hi"):
        distill.GuidedUNetStudent.from_teacher(teacher, (2.0, 2.0))
