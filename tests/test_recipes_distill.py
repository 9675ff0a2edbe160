"""Chapter 10 recipes: the shipped students load, run through the sampling driver, beat the teacher run with the
same number of evaluations, and serve chapter 11's few-step bake-off; every trainer runs (a few steps)."""
import dataclasses

import pytest
import torch

import dpm_lab as dl
from dpm_lab.recipes import distill as rd

NAMES = ["kd_moons", "kd_8g_to_moons", "pd_moons", "pd_8g_to_moons", "vsd_moons", "vsd_8g_to_moons", "vsd_8g",
         "vsd_8g_small_t", "sds_8g", "gpd_8g"]
IMAGE_NAMES = ["kd_mnist5k", "pd_mnist5k_4", "pd_mnist5k_2", "pd_mnist5k_1", "gpd_mnist5k", "vsd_mnist5k"]


def test_recipes_are_registered_and_checkpoints_are_small():
    manifest = dl.store.read_manifest(dl.store.zoo_dir())
    for name in NAMES + IMAGE_NAMES:
        assert dl.zoo.get(name).builder == rd.BUILDER
        limit = 1_000_000 if name in NAMES else 4_500_000 if name == "vsd_mnist5k" else 2_500_000   # + its fake score
        assert manifest[name]["bytes"] < limit, name
        assert manifest[name].get("train_cpu_seconds", 0) < 15 * 60 or name in NAMES, name


def _z(n=500, seed=0, teacher="moons_vp_x0"):
    return rd.teacher_noise(teacher, n, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
@pytest.mark.parametrize("data, teacher", [("moons", "moons_vp_x0"), ("8g_to_moons", "8g_to_moons")])
def test_students_beat_the_teacher_at_the_same_nfe(data, teacher):
    """Map error against the teacher's 64-step DDIM map, from the same starting points."""
    t = dl.zoo.load(teacher)
    z = _z(teacher=teacher)
    ref = dl.samplers.solve(t, z, dl.distill.pd_grid(t.schedule, 64, 64), "ddim")
    err = lambda x: float(dl.distill.map_error(x, ref).mean())            # noqa: E731
    rounds, kd = dl.zoo.load(f"pd_{data}"), dl.zoo.load(f"kd_{data}")
    for n in (1, 2, 4):
        own = dl.samplers.solve(t, z, dl.distill.pd_grid(t.schedule, 64, n), "ddim")
        assert err(rounds.sample(z, n)) < 0.6 * err(own), n
    one = dl.samplers.solve(kd, z, dl.distill.pd_grid(t.schedule, 64, 1), "ddim")
    assert err(one) < 0.6 * err(dl.samplers.solve(t, z, dl.distill.pd_grid(t.schedule, 64, 1), "ddim"))


def test_pd_rounds_refuse_a_step_count_they_do_not_have():
    with pytest.raises(ValueError, match="no PD student with n = 3"):
        dl.zoo.load("pd_moons").student(3)


def test_few_step_entries_cover_both_data_sets_and_refuse_other_nfe():
    entries = [e for e in rd.few_step_entries() if e["data"] != "mnist5k"]
    assert {e["data"] for e in entries} == {"moons", "8g_to_moons"}
    assert {(e["data"], e["method"]) for e in entries} >= {("moons", "KD"), ("moons", "PD"), ("8g_to_moons", "KD"),
                                                          ("8g_to_moons", "PD"), ("moons", "VSD/DMD"),
                                                          ("8g_to_moons", "VSD (8g source)")}
    for e in entries:
        assert e["train_s"] > 0
        nfes = (1, 2, 4) if e["method"] == "PD" else (1,)
        for nfe in nfes:
            a = e["sample"](64, nfe, torch.Generator().manual_seed(3))
            b = e["sample"](64, nfe, torch.Generator().manual_seed(3))
            assert a.shape == (64, 2) and torch.isfinite(a).all() and torch.equal(a, b)
        with pytest.raises(ValueError, match="nfe"):
            e["sample"](8, 3, None)


def test_vsd_generators_cover_the_modes_and_sds_collapses_onto_one_point():
    mix = dl.datasets.eight_gaussians_mixture()
    z = _z(2000, seed=1)
    hit = {n: dl.metrics.mode_coverage(dl.zoo.load(n).sample(z), mix)["hit"] for n in ("vsd_8g", "vsd_8g_small_t", "sds_8g")}
    assert hit["vsd_8g"] == 1.0 and hit["vsd_8g_small_t"] == 1.0 and hit["sds_8g"] <= 0.25
    assert dl.zoo.load("sds_8g").sample(z).std(0).max() < 0.05          # the SDS generator is (nearly) a point


def test_guided_student_is_closer_to_cfg_than_the_plain_conditional_model():
    teacher, student = dl.zoo.load("8g_cond"), dl.zoo.load("gpd_8g")
    g = torch.Generator().manual_seed(4)
    x, t, c = torch.randn(256, 2, generator=g), 0.5, torch.arange(256) % 8
    cfg = dl.guidance.CFG(teacher, 3.0, 8).predict(x, t, "velocity", c)
    err_s = (student.at(3.0).predict(x, t, "velocity", c) - cfg).norm(dim=1).mean()
    err_c = (teacher.predict(x, t, "velocity", c) - cfg).norm(dim=1).mean()
    assert err_s < 0.3 * err_c
    with pytest.raises(ValueError, match="trained range"):
        student.at(6.0)


def test_image_entries_sample_digits_of_the_requested_labels_and_refuse_other_nfe():
    entries = {e["method"]: e for e in rd.few_step_entries() if e["data"] == "mnist5k"}
    assert set(entries) == {"KD", "PD (DDIM on its grid)", "guided PD st. 1 (DPM-Solver++(2M), 1 call/NFE)",
                            "VSD/DMD (+ regression)"}
    assert entries["PD (DDIM on its grid)"]["nfes"] == (1, 2, 4)
    labels = torch.tensor([3, 1, 4, 1])
    for e in entries.values():
        assert e["train_s"] > 0
        a = e["sample"](4, 1, torch.Generator().manual_seed(2), labels)
        b = e["sample"](4, 1, torch.Generator().manual_seed(2), labels)
        assert a.shape == (4, 1, 28, 28) and torch.equal(a, b) and a.abs().max() <= 1
        with pytest.raises(ValueError, match="nfe"):
            e["sample"](4, 3, None, labels)
    pd = entries["PD (DDIM on its grid)"]
    rounds = ("pd_mnist5k_4", "pd_mnist5k_2", "pd_mnist5k_1")
    assert abs(pd["train_s"] - sum(rd._train_s(n) for n in rounds)) < 1e-6          # the whole pipeline's cost


@torch.no_grad()
def test_guided_digit_student_is_closer_to_cfg_than_the_conditional_model_with_half_the_calls():
    teacher, student = dl.zoo.load("mnist5k_cond"), dl.zoo.load("gpd_mnist5k")
    g = torch.Generator().manual_seed(5)
    x0, c = dl.images.load_mnist5k("heldout")
    x0, c = x0[:64], c[:64]
    for om, t in ((2.0, 0.5), (3.5, 0.8)):
        co = teacher.schedule.coeffs(torch.tensor(t, dtype=torch.float64))
        x_t = float(co.alpha) * x0 + float(co.sigma) * torch.randn(x0.shape, generator=g)
        cfg = dl.guidance.CFG(teacher, om, 10).predict(x_t, t, "x0", c)
        err_s = (student.at(om).predict(x_t, t, "x0", c) - cfg).flatten(1).norm(dim=1).mean()
        err_c = (teacher.predict(x_t, t, "x0", c) - cfg).flatten(1).norm(dim=1).mean()
        assert err_s < 0.5 * err_c, (om, t)
    with pytest.raises(ValueError, match=r"trained range \[1, 4\]"):
        student.at(4.5)


@pytest.mark.parametrize("name", NAMES + IMAGE_NAMES)
def test_every_trainer_runs_a_few_steps(name):
    r = dl.zoo.get(name)
    spec = dict(r.spec)
    if "train" in spec:
        spec["train"] = {**spec["train"], "steps": 3, **({"batch": 4} if name in IMAGE_NAMES else {})}
    else:
        spec["steps"] = 3
    if "n_pairs" in spec:
        spec["n_pairs"] = 64 if name in NAMES else 8
    if "teacher_nfe" in spec:
        spec["teacher_nfe"] = 2
    if name == "vsd_mnist5k":
        spec.update(batch=4, fake_warmup=1, reg_batch=2)
    r2 = dataclasses.replace(r, spec=spec)
    model = r2.new_model()
    info = r2.trainer(model, r2, device="cpu", progress=False)
    assert "final_loss" in info


@torch.no_grad()
def test_digit_pd_students_are_closer_to_the_guided_teachers_map_than_its_own_ddim():
    """Map error (RMS per pixel) against CFG(mnist5k_cond, 2)'s 16-step DDIM map, from the same noise."""
    field, labels = rd.image_teacher_field(), torch.arange(20) % 10
    z = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(6))

    def run(model, n):
        return dl.samplers.solve(model, z, rd.image_pd_grid(n), "ddim", c=labels)

    def err(x):
        return float(((x - ref) ** 2).flatten(1).mean(1).sqrt().mean())
    ref = run(field, 16)
    for n in (4, 2, 1):
        assert err(run(dl.zoo.load(f"pd_mnist5k_{n}"), n)) < 0.8 * err(run(field, n)), n
    assert err(rd.kd_image_map(dl.zoo.load("kd_mnist5k"), z, labels)) < 0.7 * err(run(field, 1))


def test_vsd_generator_draws_its_input_from_the_eight_gaussians():
    spec = dl.zoo.get("vsd_8g_to_moons").spec
    z = rd._gen_input(spec, 4000, torch.Generator().manual_seed(8))
    ref = dl.datasets.sample_2d("eight_gaussians", 4000, generator=torch.Generator().manual_seed(8)).float()
    assert torch.equal(z, ref)
    assert torch.equal(rd._gen_input(dl.zoo.get("vsd_moons").spec, 5, torch.Generator().manual_seed(8)),
                       torch.randn(5, 2, generator=torch.Generator().manual_seed(8)))   # vsd_moons unchanged


def test_digit_vsd_fake_and_generator_steps_each_change_only_their_own_parameters():
    r = dl.zoo.get("vsd_mnist5k")
    spec = {**r.spec, "reg_batch": 2}
    model = r.new_model()
    fake_loss = dl.zoo.get(rd.IMAGE_TEACHER).loss(dl.zoo.get(rd.IMAGE_TEACHER).spec)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-3)
    opt_f = torch.optim.Adam(model.fake.parameters(), lr=1e-3)
    g, c = torch.Generator().manual_seed(9), torch.tensor([0, 7])
    z = torch.randn(2, 1, 28, 28, generator=g)
    pairs = (z, torch.zeros_like(z), c)
    real = dl.zoo.load(rd.IMAGE_TEACHER)

    def params():
        return ([p.detach().clone() for p in model.generator.parameters()],
                [p.detach().clone() for p in model.fake.parameters()])

    def changed(before, after):
        return any(not torch.equal(a, b) for a, b in zip(before, after))

    gen0, fake0 = params()
    x = rd._vsd_image_gen_step(model, opt_g, real, z, c, g, spec, pairs)
    gen1, fake1 = params()
    assert changed(gen0, gen1) and not changed(fake0, fake1)
    rd._vsd_image_fake_step(model, opt_f, fake_loss, x, c, g)
    gen2, fake2 = params()
    assert changed(fake1, fake2) and not changed(gen1, gen2)
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in real.parameters())   # the teacher stays


@torch.no_grad()
def test_digit_vsd_generator_grew_the_spread_its_start_lacks():
    """The start (gpd_mnist5k's x0 at t = 1, alpha_1 ~ 0.007) is nearly the class's mean digit; training spreads it."""
    z = torch.randn(40, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    c = torch.full((40,), 3)
    x = dl.zoo.load("vsd_mnist5k").sample(z, c)
    start = dl.zoo.load("gpd_mnist5k").at(rd.IMAGE_OMEGA).predict(z, 1.0, "x0", c).clamp(-1, 1)
    assert float(x.std(0).mean()) > 4 * float(start.std(0).mean())
    labels = torch.arange(50) % 10
    x = dl.zoo.load("vsd_mnist5k").sample(torch.randn(50, 1, 28, 28, generator=torch.Generator().manual_seed(4)), labels)
    assert dl.digit_eval.evaluate(x, labels, verbose=False)["conditional_accuracy"] >= 0.9


@torch.no_grad()
def test_vsd_from_the_eight_gaussians_lands_on_moons():
    e = next(e for e in rd.few_step_entries() if e["method"] == "VSD (8g source)")
    x = e["sample"](1000, 1, torch.Generator().manual_seed(2))
    ref = dl.datasets.sample_2d("moons", 1000, generator=torch.Generator().manual_seed(1)).float()
    src = rd.teacher_noise("8g_to_moons", 1000, generator=torch.Generator().manual_seed(2))
    assert dl.metrics.w2_exact(x, ref) < 0.5 < dl.metrics.w2_exact(src, ref)
