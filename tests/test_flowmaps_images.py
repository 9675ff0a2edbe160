"""Chapter 11's image students: the ImageFlowMap parameterizations (boundary, start as the teacher), the CD loss on
MNIST-5k batches with the guided teacher, a two-step build of an image recipe, the sampler's shapes and its bad
input."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import zoo
from dpm_lab.recipes import flowmaps as rf


@pytest.fixture(scope="module")
def teacher():
    return zoo.load(rf.IMAGE_TEACHER)


def _x(n=3, seed=0):
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_cm_student_starts_as_the_teachers_denoiser_and_keeps_the_boundary(teacher):
    f = dl.flowmaps.ImageFlowMap.from_teacher(teacher, "cm")
    x, c = _x(), torch.tensor([0, 4, 9])
    with torch.no_grad():
        for s in (0.3, 0.9):
            assert torch.allclose(f(x, s, 0.0, c), teacher.predict(x, s, "x0", c), atol=1e-5)
        assert torch.allclose(f(x, 0.0, 0.0, c), x)                     # f(x, 0) = x: c_skip(0) = 1, c_out(0) = 0
    with pytest.raises(ValueError, match="t = 0"):
        f(x, 0.5, 0.2, c)


def test_ctm_student_is_identity_at_t_equal_s_and_starts_as_one_teacher_ddim_step(teacher):
    G = dl.flowmaps.ImageFlowMap.from_teacher(teacher, "ctm")
    x, c = _x(seed=1), torch.tensor([1, 2, 3])
    sched = teacher.schedule
    with torch.no_grad():
        assert torch.allclose(G(x, 0.6, 0.6, c), x, atol=1e-5)
        x0 = teacher.predict(x, 0.6, "x0", c)
        eps = (x - sched.alpha(0.6) * x0) / sched.sigma(0.6)
        ddim = sched.alpha(0.2) * x0 + sched.sigma(0.2) * eps
        assert torch.allclose(G(x, 0.6, 0.2, c), ddim.float(), atol=1e-4)


def test_from_teacher_rejects_a_non_v_teacher_and_an_unknown_param(teacher):
    with pytest.raises(ValueError, match="predicting v"):
        dl.flowmaps.ImageFlowMap.from_teacher(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="param"):
        dl.flowmaps.ImageFlowMap(torch.nn.Identity(), teacher.schedule, "ctm_v")


def test_image_cd_loss_is_per_sample_and_zero_for_the_exact_teacher_map():
    """The CD loss on a batch of digits is (B,), finite, and vanishes when target and student agree
    (a student that ignores s: the same output at s and s')."""
    r = zoo.get("fm_mnist_cd")
    x0, c = r.data(r.spec)
    loss = r.loss(r.spec)
    student = r.new_model()
    value = loss(student, x0[:4], c[:4], generator=torch.Generator().manual_seed(0))
    assert value.shape == (4,) and torch.isfinite(value).all() and (value > 0).all()

    class Constant(torch.nn.Module):
        def forward(self, x, s, t, c=None):
            return torch.zeros_like(x)
    assert torch.equal(loss(Constant(), x0[:4], c[:4], generator=torch.Generator().manual_seed(0)), torch.zeros(4))


@pytest.mark.parametrize("method", ["cd", "ctm"])
def test_a_two_step_build_of_an_image_recipe_writes_a_loadable_student(tmp_path, method):
    name = f"fm_mnist_{method}_tiny_test"
    if name not in zoo.names():
        rf.image_recipe(name, method, N=4, steps=2, batch=2, description="test only")
    zoo.build(name, root=tmp_path)
    entry = dl.store.read_manifest(tmp_path)[name]
    assert entry["train_cpu_seconds"] > 0 and entry["bytes"] < 2.5e6
    student = zoo.load(name, root=tmp_path)
    x = rf.sample_image_student(student, 3, 2, gamma=rf.IMAGE_GAMMA[method], generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28) and x.abs().max() <= 1
    with pytest.raises(ValueError, match="method"):
        rf.image_recipe("fm_mnist_bad", "mf")


def test_sample_image_student_validates_its_input(teacher):
    f = dl.flowmaps.ImageFlowMap.from_teacher(teacher, "cm")
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="nfe"):
            rf.sample_image_student(f, 2, bad)
    with pytest.raises(ValueError, match="labels"):
        rf.sample_image_student(f, 2, 1, labels=torch.tensor([3, 11]))
    with pytest.raises(ValueError, match="n must"):
        rf.sample_image_student(f, 0, 1)


def test_two_time_loss_reads_the_teacher_step_as_the_target_at_t_equal_s_prime():
    """With N = 1 every pair is s = 1, s' = 0, t = 0: the target is G(DDIM(x_1 -> 0), 0, 0) = the teacher's step,
    so a student that returns the teacher's DDIM jump has zero loss."""
    r = zoo.get("fm_mnist_ctm")
    assert r.spec["param"] == "ctm" and isinstance(r.new_model().net, dl.nets.UNet)
    x0, c = r.data(r.spec)
    sched = zoo.get(rf.IMAGE_TEACHER).new_model().schedule
    teacher = rf.image_teacher()
    loss = dl.flowmaps.TwoTimeCDLoss(sched, teacher, N=1)

    class TeacherJump(torch.nn.Module):
        def forward(self, x, s, t, c=None):
            s = torch.as_tensor(s, dtype=x.dtype).expand(x.shape[0])
            t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
            return x if bool((s == t).all()) else dl.flowmaps._ddim_batch(teacher, x, s, t, sched, c)
    value = loss(TeacherJump(), x0[:3], c[:3], generator=torch.Generator().manual_seed(0))
    assert value.shape == (3,) and value.abs().max() < 1e-6
