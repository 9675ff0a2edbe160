"""Chapter 10 recipes: distilled students of the zoo's 2-D teachers (builder "distill/1").

    rounds = dl.zoo.load("pd_moons")                 # PD students with 32, 16, ..., 1 steps
    x = rounds.sample(z, 4)                          # the 4-step student (DDIM on its nested grid)
    gen = dl.zoo.load("vsd_8g").generator            # a one-step generator (a Model: dl.samplers runs it)
    few_step_entries()                               # the rows chapter 11's few-step bake-off reads

Teachers: moons_vp_x0 (VP, x0 with EDM preconditioning) on moons, 8g_to_moons (flow path from eight
Gaussians at t = 1 to moons at t = 0), the exact eight-Gaussian mixture under VP (score distillation)
and 8g_cond (CFG teacher of guided PD).  Every flow-map student distils the teacher's 64-step DDIM map.

Names:
    kd_moons, kd_8g_to_moons      knowledge distillation: one-step student on 20000 (x_T, teacher endpoint) pairs
    pd_moons, pd_8g_to_moons      progressive distillation 64 -> 32 -> ... -> 1 steps, each round warm-started
    vsd_moons                     VSD/DMD one-step generator against moons_vp_x0 (fake score from the teacher)
    vsd_8g_to_moons               the same with the generator's input drawn from the eight Gaussians (the
                                  8g_to_moons source): VSD needs only the target's noised score, not a flow teacher
    vsd_8g, vsd_8g_small_t, sds_8g   one-step generators on the exact eight Gaussians, all started on ONE mode:
                                  VSD over t in [0.02, 0.98], VSD over t in [0.02, 0.1] only (reverse KL at
                                  low noise: the intervention), and SDS (Dirac generator, no fake score)
    gpd_8g                        guided PD stage 1: an omega-conditioned student of 8g_cond's CFG, omega in [1, 4]
    kd_mnist5k, pd_mnist5k_4/2/1, gpd_mnist5k, vsd_mnist5k   the digit students of CFG(mnist5k_cond, omega 2);
                                  vsd_mnist5k: a one-step G(z, c) started from gpd_mnist5k at t = 1, trained by
                                  the VSD/DMD direction against a fake score plus DMD's regression on cached pairs
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import datasets, distill, images, losses, nets, samplers, store, zoo
from ..guidance import CFG
from ..schedules import get_schedule
from ..train import fit, lr_at
from ..utils import randn
from ..zoo import Recipe, register

__all__ = ["BUILDER", "PDRounds", "ScoreDistilled", "DISTILL_RECIPES", "retrain", "teacher_noise", "few_step_entries",
           "SNAP_TIMES", "N_TEACHER", "image_entries", "image_teacher_field", "image_teacher_endpoints", "kd_image_map",
           "image_pd_grid", "ImageScoreDistilled", "IMAGE_TEACHER", "IMAGE_OMEGA", "IMAGE_NULL", "IMAGE_N_TEACHER"]

BUILDER = "distill/1"
N_TEACHER = 64                     # the teacher's DDIM steps every flow-map student distils
SNAP_TIMES = (0.1, 0.3, 0.6)       # times at which the fake score field is stored with each snapshot
_SNAP_GRID = 15                    # the stored field's grid (15 x 15 on [-3, 3]^2)
_SNAP_N = 400                      # generator samples stored per snapshot


# -- teachers and their data ------------------------------------------------------------------------------
def _teacher(spec: dict):
    if spec["teacher"] == "exact_8g":
        return datasets.eight_gaussians_mixture().model(get_schedule("vp"))
    return zoo.load(spec["teacher"])


def _teacher_spec(spec: dict) -> dict:
    return zoo.get(spec["teacher"]).spec


def teacher_noise(name: str, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The start points x_T of a teacher's PF-ODE (t = 1): N(0, I), or the source set of a transport teacher."""
    source = zoo.get(name).spec.get("source") if name != "exact_8g" else None
    if source:
        return datasets.sample_2d(source, n, generator=generator).float()
    return randn((n, 2), generator=generator)


def _data_pairs(spec: dict):
    """(x0, noise-end) draws of the teacher's training path: data and N(0, I) or the transport source."""
    tspec = _teacher_spec(spec)

    def draw(n, *, generator=None):
        x0 = datasets.sample_2d(tspec["data"], n, generator=generator).float()
        return x0, teacher_noise(spec["teacher"], n, generator=generator)
    return draw


def _teacher_map(teacher, x_T: torch.Tensor) -> torch.Tensor:
    """The map every flow-map student distils: the teacher's N_TEACHER-step DDIM run from t = 1."""
    with torch.no_grad():
        return samplers.solve(teacher, x_T, distill.pd_grid(teacher.schedule, N_TEACHER, N_TEACHER), "ddim")


# -- knowledge distillation -----------------------------------------------------------------------------------
def _copy_model(spec: dict) -> nn.Module:
    return zoo.get(spec["teacher"]).new_model()


def _kd_trainer(model, recipe: Recipe, *, device, progress: bool) -> dict:
    spec, teacher = recipe.spec, _teacher(recipe.spec)
    model.load_state_dict(teacher.state_dict())
    g = torch.Generator().manual_seed(spec["seed"] + 1000)
    x_T = teacher_noise(spec["teacher"], spec["n_pairs"], generator=g)
    x_end = _teacher_map(teacher, x_T)
    grid = distill.pd_grid(teacher.schedule, N_TEACHER, 1)

    def loss(student, x, c, *, generator=None):        # ||one student DDIM step T -> t_end  -  teacher endpoint||^2
        return ((distill.ddim_jump(student, x, grid[0], grid[1]) - c) ** 2).sum(1)

    recs = list(fit(model, loss, (x_T, x_end), seed=spec["seed"], device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return {"final_loss": round(recs[-1].ema_loss, 5)}


# -- progressive distillation -------------------------------------------------------------------------------
class PDRounds(nn.Module):
    """The students of the PD rounds: students[i] takes steps[i] = N_TEACHER / 2^(i+1) DDIM steps on its grid."""

    def __init__(self, spec: dict):
        super().__init__()
        self.teacher_name, self.steps = spec["teacher"], list(spec["steps"])
        self.students = nn.ModuleList([zoo.get(spec["teacher"]).new_model() for _ in self.steps])
        self.schedule = self.students[0].schedule

    def student(self, n: int):
        """The n-step student (a Model); n must be one of self.steps."""
        if n not in self.steps:
            raise ValueError(f"no PD student with n = {n} steps; the rounds have {self.steps} "
                             f"(the teacher itself runs {N_TEACHER})")
        return self.students[self.steps.index(n)]

    def grid(self, n: int) -> list[float]:
        return distill.pd_grid(self.schedule, N_TEACHER, n)

    def sample(self, x_T: torch.Tensor, n: int) -> torch.Tensor:
        """The n-step student's output from x_T: dl.samplers.solve with DDIM on its nested grid."""
        with torch.no_grad():
            return samplers.solve(self.student(n), x_T, self.grid(n), "ddim")


def _pd_round(student, teacher, n: int, draw, spec: dict, *, device, progress: bool) -> float:
    """Distil `teacher` (2n steps) into `student` (n steps): s, u, t = consecutive times of the 2n grid."""
    fine = torch.tensor(distill.pd_grid(teacher.schedule, N_TEACHER, 2 * n), dtype=torch.float64)

    def loss(model, x0, noise, *, generator=None):
        k = torch.randint(0, n, (x0.shape[0],), generator=generator)
        s, u, t = fine[2 * k], fine[2 * k + 1], fine[2 * k + 2]
        co = teacher.schedule.coeffs(s)
        x_s = co.alpha[:, None].float() * x0 + co.sigma[:, None].float() * noise
        return distill.pd_loss(model, teacher, x_s, s, u, t)

    recs = list(fit(student, loss, draw, seed=spec["seed"] + n, device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return recs[-1].ema_loss


def _pd_trainer(model: PDRounds, recipe: Recipe, *, device, progress: bool) -> dict:
    spec = recipe.spec
    teacher = _teacher(spec)
    draw, info = _data_pairs(spec), {"round_seconds": {}}
    for i, n in enumerate(model.steps):
        student = model.students[i]
        student.load_state_dict(teacher.state_dict())              # warm start from the previous round
        t0 = time.perf_counter()
        info["final_loss"] = round(_pd_round(student, teacher, n, draw, spec, device=device, progress=progress), 6)
        info["round_seconds"][str(n)] = round(time.perf_counter() - t0, 1)
        teacher = copy.deepcopy(student).eval().requires_grad_(False)
    return info


# -- score distillation -----------------------------------------------------------------------------------------
class ScoreDistilled(nn.Module):
    """A one-step generator with its fake score and the training snapshots (for the explorer).

    generator: distill.OneStepGenerator (a Model run with DDIM on [1, 0]); fake: the fake-score Predictor
    (None for SDS); buffers snap_steps (S,), snap_x (S, _SNAP_N, 2), snap_fake (S, len(SNAP_TIMES), G*G, 2).
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.method = spec["method"]
        self.generator = distill.OneStepGenerator(get_schedule("vp"))
        self.fake = zoo.get(spec["fake_init"]).new_model() if self.method != "SDS" else None
        S = spec["snapshots"]
        self.register_buffer("snap_steps", torch.zeros(S, dtype=torch.long))
        self.register_buffer("snap_x", torch.zeros(S, _SNAP_N, 2))
        self.register_buffer("snap_fake", torch.zeros(S, len(SNAP_TIMES), _SNAP_GRID ** 2, 2))

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return samplers.solve(self.generator, z, [1.0, 0.0], "ddim")


def snapshot_points() -> torch.Tensor:
    """The (G*G, 2) grid on [-3, 3]^2 where the stored fake score fields live."""
    ax = torch.linspace(-3, 3, _SNAP_GRID)
    X, Y = torch.meshgrid(ax, ax, indexing="xy")
    return torch.stack([X.reshape(-1), Y.reshape(-1)], 1)


def _init_generator(gen: distill.OneStepGenerator, center) -> None:
    if center is not None:                    # start on one point with a small spread (the mode-seeking set-up)
        last = gen.body[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor(center, dtype=last.bias.dtype))


def _snapshot(model: ScoreDistilled, i: int, step: int, z_snap: torch.Tensor) -> None:
    with torch.no_grad():
        model.snap_steps[i] = step
        model.snap_x[i] = model.generator(z_snap)
        if model.fake is not None:
            pts = snapshot_points()
            for j, t in enumerate(SNAP_TIMES):
                model.snap_fake[i, j] = model.fake.predict(pts, t, "score")


def _gen_input(spec: dict, n: int, g: torch.Generator) -> torch.Tensor:
    """The generator's input z: N(0, I), or draws of spec["source"] (its input law is free: VSD only needs the
    target's noised score, from the real-score teacher, so a generator may start from the eight Gaussians)."""
    if spec.get("source"):
        return datasets.sample_2d(spec["source"], n, generator=g).float()
    return randn((n, 2), generator=g)


def _sd_trainer(model: ScoreDistilled, recipe: Recipe, *, device, progress: bool) -> dict:
    spec, real = recipe.spec, _teacher(recipe.spec)
    sched = model.generator.schedule
    g = torch.Generator().manual_seed(spec["seed"] + 1000)
    _init_generator(model.generator, spec.get("init_center"))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=spec["lr"])
    if model.fake is not None:
        model.fake.load_state_dict(zoo.load(spec["fake_init"]).state_dict())
        fake_loss = losses.DiffusionLoss(sched, model.fake.kind, weighting="edm" if model.fake.kind == "x0" else "none",
                                         p_time=losses.TimeDist("uniform", t_min=1e-3, t_max=1.0))
        opt_f = torch.optim.Adam(model.fake.parameters(), lr=spec["lr_fake"])
    z_snap = _gen_input(spec, _SNAP_N, torch.Generator().manual_seed(7))
    steps, B, (t_lo, t_hi) = spec["steps"], spec["batch"], spec["t_range"]
    at = set(round(k * steps / (spec["snapshots"] - 1)) for k in range(spec["snapshots"]))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=f"{spec['method']} {recipe.name}")
    snap_i, last = 0, 0.0
    for step in range(steps + 1):
        if step in at:
            _snapshot(model, snap_i, step, z_snap)
            snap_i += 1
        if step == steps:
            break
        rate = lr_at(step, steps, 1.0, "cosine")
        if model.fake is not None:                       # the fake score follows the generator (DSM on its samples)
            for grp in opt_f.param_groups:
                grp["lr"] = spec["lr_fake"] * rate
            for _ in range(spec["fake_updates"]):
                with torch.no_grad():
                    x = model.generator(_gen_input(spec, B, g))
                lf = fake_loss(model.fake, x, generator=g).mean()
                opt_f.zero_grad()
                lf.backward()
                opt_f.step()
        for grp in opt_g.param_groups:
            grp["lr"] = spec["lr"] * rate
        x = model.generator(_gen_input(spec, B, g))
        t = t_lo + (t_hi - t_lo) * torch.rand(B, generator=g, dtype=torch.float64)
        co = sched.coeffs(t)
        eps = randn((B, 2), generator=g)
        x_t = co.alpha[:, None].float() * x.detach() + co.sigma[:, None].float() * eps
        d = (distill.sds_direction(real, x_t, t, eps, spec["weight"]) if model.fake is None
             else distill.vsd_direction(model.fake, real, x_t, t, spec["weight"]))
        lg = distill.distribution_matching_loss(x, d.float())
        opt_g.zero_grad()
        lg.backward()
        opt_g.step()
        last = 0.98 * last + 0.02 * float(d.norm(dim=1).mean())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return {"final_loss": round(last, 5)}


# -- guided PD, stage 1 -------------------------------------------------------------------------------------------
def _gpd_model(spec: dict) -> distill.GuidedStudent:
    t = zoo.get(spec["teacher"])
    return distill.GuidedStudent(get_schedule(**t.spec["schedule"]), t.spec["kind"], t.n_classes,
                                 tuple(spec["omega_range"]))


def _gpd_trainer(model: distill.GuidedStudent, recipe: Recipe, *, device, progress: bool) -> dict:
    spec, teacher = recipe.spec, _teacher(recipe.spec)
    model.copy_teacher(teacher.net)
    mix, null = datasets.eight_gaussians_mixture(), model.n_classes
    lo, hi = model.omega_range

    def draw(n, *, generator=None):
        x0, c = mix.sample(n, generator=generator, return_labels=True)
        return x0.float(), c

    def loss(student, x0, c, *, generator=None):       # ||x_theta(x_t, t, c, omega) - CFG_omega(x_t, t, c)||^2
        n = x0.shape[0]
        t = torch.rand(n, generator=generator, dtype=torch.float64).clamp(1e-3, 1.0)
        om = lo + (hi - lo) * torch.rand(n, generator=generator)
        co = student.schedule.coeffs(t)
        x_t = co.alpha[:, None].float() * x0 + co.sigma[:, None].float() * randn(x0.shape, generator=generator)
        with torch.no_grad():
            target = distill.guided_target(teacher, x_t, t, c, om, null)
        return ((student(x_t, t, c, om) - target) ** 2).sum(1)

    recs = list(fit(model, loss, draw, seed=spec["seed"], device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return {"final_loss": round(recs[-1].ema_loss, 5)}


# -- MNIST-5k students of the guided teacher ----------------------------------------------------------------------
IMAGE_TEACHER, IMAGE_OMEGA, IMAGE_NULL = "mnist5k_cond", 2.0, 10     # every image student distils CFG(teacher, 2)
IMAGE_SHAPE = (1, 28, 28)
IMAGE_KD_NFE = 12                  # DPM-Solver++(2M) evaluations of the guided teacher per KD pair
IMAGE_N_TEACHER = 16               # the guided teacher's DDIM steps the first PD round distils


def image_teacher_field():
    """The guided field every MNIST-5k student distils: CFG(mnist5k_cond, omega = 2) on the whole path (§8.3)."""
    return CFG(zoo.load(IMAGE_TEACHER), IMAGE_OMEGA, IMAGE_NULL)


def image_teacher_endpoints(x_T: torch.Tensor, labels: torch.Tensor, nfe: int = IMAGE_KD_NFE, *, batch: int = 256,
                            progress: bool = False) -> torch.Tensor:
    """The guided teacher's PF-ODE endpoints from x_T (DPM-Solver++(2M), nfe evaluations, clamped to [-1, 1])."""
    field, out = image_teacher_field(), []
    starts = range(0, x_T.shape[0], batch)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="teacher endpoints")
    with torch.no_grad():
        for i in starts:
            out.append(samplers.solve(field, x_T[i:i + batch], nfe=nfe, method="dpmpp_2m",
                                      c=labels[i:i + batch]).clamp(-1, 1))
    return torch.cat(out)


def _image_student(spec: dict) -> nn.Module:
    return zoo.get(IMAGE_TEACHER).new_model()


def _mnist(split: str):
    return images.load_mnist5k(split)


def kd_image_map(student, x_T: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The KD student's one-step map G(x_T) = x0_theta(x_T, t = 1, c): ONE evaluation (DDIM from 1 to 0)."""
    return samplers.solve(student, x_T, [1.0, 0.0], "ddim", c=labels)


def _kd_image_trainer(model, recipe: Recipe, *, device, progress: bool) -> dict:
    spec = recipe.spec
    model.load_state_dict(zoo.load(IMAGE_TEACHER).state_dict())
    g = torch.Generator().manual_seed(spec["seed"] + 1000)
    n = spec["n_pairs"]
    x_T, labels = randn((n, *IMAGE_SHAPE), generator=g), torch.arange(n) % 10
    x_end = image_teacher_endpoints(x_T, labels, spec["teacher_nfe"], progress=progress)
    pairs = torch.cat([x_T, x_end], 1)                     # (n, 2, 28, 28): channel 0 the noise, 1 the endpoint

    def loss(student, xy, c, *, generator=None):          # ||G(x_T) - teacher endpoint||^2 (§10.1.2)
        pred = student.predict(xy[:, :1], 1.0, "x0", c)
        return ((pred - xy[:, 1:]) ** 2).flatten(1).sum(1)

    recs = list(fit(model, loss, (pairs, labels), seed=spec["seed"], device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return {"final_loss": round(recs[-1].ema_loss, 5)}


def _image_pd_teacher(spec: dict):
    """The first teacher of an image PD recipe: the guided field, or the student of an earlier recipe."""
    if spec["teacher"] == IMAGE_TEACHER:
        return image_teacher_field(), zoo.load(IMAGE_TEACHER).state_dict()
    prev = zoo.load(spec["teacher"])
    return prev, prev.state_dict()


def image_pd_grid(n: int) -> list[float]:
    """The n-step grid of an image PD student, nested in the guided teacher's IMAGE_N_TEACHER-step DDIM grid."""
    return distill.pd_grid(get_schedule("vp"), IMAGE_N_TEACHER, n)


def _image_pd_round(student, teacher, n: int, spec: dict, *, device, progress: bool) -> float:
    """Distil `teacher` (2n steps) into `student` (n steps) on noised MNIST-5k training digits and their labels."""
    fine = torch.tensor(image_pd_grid(2 * n), dtype=torch.float64)

    def loss(model, x0, c, *, generator=None):
        k = torch.randint(0, n, (x0.shape[0],), generator=generator)
        s, u, t = fine[2 * k], fine[2 * k + 1], fine[2 * k + 2]
        co = model.schedule.coeffs(s)
        x_s = (co.alpha.float()[:, None, None, None] * x0
               + co.sigma.float()[:, None, None, None] * randn(x0.shape, generator=generator))
        return distill.pd_loss(model, teacher, x_s, s, u, t, c)

    recs = list(fit(student, loss, _mnist("train"), seed=spec["seed"] + n, device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return recs[-1].ema_loss


def _pd_image_trainer(model, recipe: Recipe, *, device, progress: bool) -> dict:
    """PD rounds from the recipe's teacher down to spec['steps'][-1] steps; the last round's student is kept."""
    spec = recipe.spec
    teacher, state = _image_pd_teacher(spec)
    info = {"round_cpu_seconds": {}}
    for n in spec["steps"]:
        model.load_state_dict(state)                                  # warm start: the previous round's student
        t0 = time.process_time()
        info["final_loss"] = round(_image_pd_round(model, teacher, n, spec, device=device, progress=progress), 5)
        info["round_cpu_seconds"][str(n)] = round(time.process_time() - t0, 1)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        state = teacher.state_dict()
    return info


def _gpd_image_model(spec: dict) -> distill.GuidedUNetStudent:
    return distill.GuidedUNetStudent.from_teacher(zoo.get(IMAGE_TEACHER).new_model(), tuple(spec["omega_range"]))


def _gpd_image_trainer(model: distill.GuidedUNetStudent, recipe: Recipe, *, device, progress: bool) -> dict:
    spec, teacher = recipe.spec, zoo.load(IMAGE_TEACHER)
    model.net.load_state_dict(nets.UNet.grow(teacher.net, 1).state_dict())   # start as the conditional teacher
    lo, hi = model.omega_range

    def loss(student, x0, c, *, generator=None):        # ||x_theta(x_t, t, c, omega) - CFG_omega(x_t, t, c)||^2
        n = x0.shape[0]
        t = torch.rand(n, generator=generator, dtype=torch.float64).clamp(1e-3, 1.0)
        om = lo + (hi - lo) * torch.rand(n, generator=generator)
        co = student.schedule.coeffs(t)
        x_t = (co.alpha.float()[:, None, None, None] * x0
               + co.sigma.float()[:, None, None, None] * randn(x0.shape, generator=generator))
        with torch.no_grad():
            target = distill.guided_target(teacher, x_t, t, c, om, IMAGE_NULL, student.kind)
        return ((student(x_t, t, c, om) - target) ** 2).flatten(1).sum(1)

    recs = list(fit(model, loss, _mnist("train"), seed=spec["seed"], device=device, progress=progress,
                    log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return {"final_loss": round(recs[-1].ema_loss, 5)}


# -- VSD/DMD one-step generator on MNIST-5k ------------------------------------------------------------------------
class ImageScoreDistilled(nn.Module):
    """A label-conditional one-step generator G(z, c) of CFG(mnist5k_cond, 2) with its fake score (§10.2).

    generator: distill.GuidedUNetStudent started from gpd_mnist5k (the guided teacher in one call); its map is
    G(z, c) = x0-prediction at t = 1 from z at omega = IMAGE_OMEGA (one network call).  fake: a copy of the
    teacher's network, trained by denoising on the generator's samples with the same labels.
    """

    def __init__(self, spec: dict):
        super().__init__()
        self.generator = _gpd_image_model(zoo.get(spec["generator_init"]).spec)
        self.fake = zoo.get(IMAGE_TEACHER).new_model()

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """G(z, c) = x0_theta(z, t = 1, c, omega = 2): ONE network evaluation (differentiable)."""
        return self.generator.at(IMAGE_OMEGA).predict(z, 1.0, "x0", labels)

    def sample(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.generate(z, labels).clamp(-1, 1)


def _vsd_image_fake_step(model: ImageScoreDistilled, opt_f, fake_loss, x: torch.Tensor, c: torch.Tensor, g) -> float:
    """One denoising step of the fake score on the generator's (detached) samples x with labels c."""
    lf = fake_loss(model.fake, x.detach(), c, generator=g).mean()
    opt_f.zero_grad()
    lf.backward()
    opt_f.step()
    return lf.item()


def _vsd_image_gen_step(model: ImageScoreDistilled, opt_g, real, z, c, g, spec: dict, pairs=None) -> torch.Tensor:
    """One generator step: the VSD/DMD direction x0_fake - x0_real at a random t (§10.2.1, DMD's weight), plus
    (if spec["reg_weight"] > 0) DMD's regression ||G(z_k) - teacher endpoint_k||^2 on cached pairs.  Returns G(z, c)."""
    sched = model.fake.schedule
    x = model.generate(z, c)
    B = x.shape[0]
    t_lo, t_hi = spec["t_range"]
    t = t_lo + (t_hi - t_lo) * torch.rand(B, generator=g, dtype=torch.float64)
    co = sched.coeffs(t)
    x_t = (co.alpha.float()[:, None, None, None] * x.detach()
           + co.sigma.float()[:, None, None, None] * randn(x.shape, generator=g))
    d = distill.vsd_direction(model.fake, real, x_t, t, "x0", c)
    loss = distill.distribution_matching_loss(x, d)
    if pairs is not None and spec["reg_weight"] > 0:
        zr, yr, cr = pairs
        k = torch.randint(0, zr.shape[0], (spec["reg_batch"],), generator=g)
        loss = loss + spec["reg_weight"] * ((model.generate(zr[k], cr[k]) - yr[k]) ** 2).flatten(1).sum(1).mean()
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    return x


def _vsd_image_trainer(model: ImageScoreDistilled, recipe: Recipe, *, device, progress: bool) -> dict:
    spec = recipe.spec
    model.generator.load_state_dict(zoo.load(spec["generator_init"]).state_dict())
    model.fake.load_state_dict(zoo.load(IMAGE_TEACHER).state_dict())
    real = image_teacher_field()
    g = torch.Generator().manual_seed(spec["seed"] + 1000)
    pairs = None
    if spec["reg_weight"] > 0:                       # DMD's regression set: (z, guided teacher endpoint, label)
        zr, cr = randn((spec["n_pairs"], *IMAGE_SHAPE), generator=g), torch.arange(spec["n_pairs"]) % 10
        pairs = (zr, image_teacher_endpoints(zr, cr, spec["teacher_nfe"]), cr)
    fake_loss = zoo.get(IMAGE_TEACHER).loss(zoo.get(IMAGE_TEACHER).spec)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=spec["lr"])
    opt_f = torch.optim.Adam(model.fake.parameters(), lr=spec["lr_fake"])
    B, steps, warm = spec["batch"], spec["steps"], spec["fake_warmup"]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=warm + steps, desc=f"VSD/DMD {recipe.name}")
    for _ in range(warm):                            # the fake score first learns the initial generator's law
        c = torch.randint(0, 10, (B,), generator=g)
        with torch.no_grad():
            x = model.generate(randn((B, *IMAGE_SHAPE), generator=g), c)
        _vsd_image_fake_step(model, opt_f, fake_loss, x, c, g)
        if bar is not None:
            bar.update(1)
    lf = 0.0
    for step in range(steps):
        rate = lr_at(step, steps, 1.0, "cosine")
        for opt, lr in ((opt_g, spec["lr"]), (opt_f, spec["lr_fake"])):
            for grp in opt.param_groups:
                grp["lr"] = lr * rate
        c = torch.randint(0, 10, (B,), generator=g)
        x = _vsd_image_gen_step(model, opt_g, real, randn((B, *IMAGE_SHAPE), generator=g), c, g, spec, pairs)
        lf = _vsd_image_fake_step(model, opt_f, fake_loss, x, c, g)     # then the fake follows the new samples
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    model.eval()
    return {"final_loss": round(lf, 5)}


def _register_images() -> list[Recipe]:
    img = {"batch": 32, "lr_schedule": "cosine", "clip": 1.0, "warmup": 20}
    out = [register(Recipe(
        "kd_mnist5k", BUILDER, {"kind": "kd_image", "teacher": IMAGE_TEACHER, "omega": IMAGE_OMEGA,
                                "n_pairs": 1536, "teacher_nfe": IMAGE_KD_NFE, "seed": 0,
                                "train": {**img, "batch": 64, "steps": 600, "lr": 3e-4, "ema": 0.99}},
        _image_student, _nodata, _noloss, shape=IMAGE_SHAPE, n_classes=10, trainer=_kd_image_trainer,
        description=f"KD one-step student of CFG(mnist5k_cond, omega 2): 1536 (x_T, DPM-Solver++(2M) "
                    f"{IMAGE_KD_NFE}-NFE endpoint) pairs"))]
    for name, teacher, steps, n_train, what in (
            ("pd_mnist5k_4", IMAGE_TEACHER, [8, 4], 450, "16 -> 8 -> 4 steps from CFG(mnist5k_cond, omega 2)'s DDIM"),
            ("pd_mnist5k_2", "pd_mnist5k_4", [2], 700, "4 -> 2 steps (teacher: pd_mnist5k_4)"),
            ("pd_mnist5k_1", "pd_mnist5k_2", [1], 700, "2 -> 1 step (teacher: pd_mnist5k_2)")):
        out.append(register(Recipe(
            name, BUILDER, {"kind": "pd_image", "teacher": teacher, "omega": IMAGE_OMEGA, "steps": steps,
                            "n_teacher": IMAGE_N_TEACHER, "seed": 0,
                            "train": {**img, "steps": n_train, "lr": 2e-4, "ema": 0.99}},
            _image_student, _nodata, _noloss, shape=IMAGE_SHAPE, n_classes=10, trainer=_pd_image_trainer,
            description=f"progressive distillation on MNIST-5k, {what}")))
    out.append(register(Recipe(
        "gpd_mnist5k", BUILDER, {"kind": "gpd_image", "teacher": IMAGE_TEACHER, "omega_range": [1.0, 4.0], "seed": 0,
                                 "train": {**img, "steps": 1300, "lr": 3e-4, "ema": 0.995}},
        _gpd_image_model, _nodata, _noloss, shape=IMAGE_SHAPE, n_classes=10, trainer=_gpd_image_trainer,
        description="guided PD stage 1 on MNIST-5k: an omega-conditioned U-Net (UNet.grow) of mnist5k_cond's CFG, "
                    "omega in [1, 4], one evaluation per step")))
    out.append(register(Recipe(
        "vsd_mnist5k", BUILDER, {"kind": "vsd_image", "teacher": IMAGE_TEACHER, "omega": IMAGE_OMEGA,
                                 "generator_init": "gpd_mnist5k", "t_range": [0.02, 0.98], "batch": 32,
                                 "steps": 800, "fake_warmup": 40, "lr": 3e-5, "lr_fake": 1e-4,
                                 "reg_weight": 0.25, "reg_batch": 16, "n_pairs": 256, "teacher_nfe": IMAGE_KD_NFE,
                                 "seed": 0},
        ImageScoreDistilled, _nodata, _noloss, shape=IMAGE_SHAPE, n_classes=10, trainer=_vsd_image_trainer,
        description="VSD/DMD one-step generator G(z, c) of CFG(mnist5k_cond, omega 2), started from gpd_mnist5k at "
                    "t = 1; fake score a copy of mnist5k_cond on its samples; DMD regression on 256 cached pairs")))
    return out


# -- registration ---------------------------------------------------------------------------------------------------
_TRAIN = {"batch": 256, "lr_schedule": "cosine", "clip": 1.0}


def _nodata(spec):
    return None


def _noloss(spec):
    return None


def _register_all() -> list[Recipe]:
    out = []
    for data, teacher in (("moons", "moons_vp_x0"), ("8g_to_moons", "8g_to_moons")):
        out.append(register(Recipe(
            f"kd_{data}", BUILDER, {"kind": "kd", "teacher": teacher, "n_pairs": 20000, "seed": 0,
                                    "train": {**_TRAIN, "steps": 2000, "lr": 1e-3, "ema": 0.995}},
            _copy_model, _nodata, _noloss, shape=(2,), trainer=_kd_trainer,
            description=f"KD one-step student of {teacher}'s {N_TEACHER}-step DDIM map, 20000 pairs")))
        out.append(register(Recipe(
            f"pd_{data}", BUILDER, {"kind": "pd", "teacher": teacher, "steps": [32, 16, 8, 4, 2, 1], "seed": 0,
                                    "train": {**_TRAIN, "steps": 1000, "lr": 3e-4, "ema": 0.99}},
            PDRounds, _nodata, _noloss, shape=(2,), trainer=_pd_trainer,
            description=f"progressive distillation of {teacher}: 64 -> 32 -> ... -> 1 DDIM steps")))
    sd = {"steps": 2000, "batch": 256, "lr": 1e-3, "lr_fake": 1e-3, "fake_updates": 2, "snapshots": 9, "seed": 0}
    out.append(register(Recipe(
        "vsd_moons", BUILDER, {**sd, "kind": "sd", "method": "VSD/DMD", "teacher": "moons_vp_x0",
                               "fake_init": "moons_vp_x0", "t_range": [0.02, 0.98], "init_center": None, "weight": "x0"},
        ScoreDistilled, _nodata, _noloss, shape=(2,), trainer=_sd_trainer,
        description="VSD/DMD one-step generator against moons_vp_x0, fake score initialised from it")))
    out.append(register(Recipe(
        "vsd_8g_to_moons", BUILDER, {**sd, "steps": 12000, "kind": "sd", "method": "VSD/DMD", "teacher": "moons_vp_x0",
                                     "fake_init": "moons_vp_x0", "t_range": [0.02, 0.98], "init_center": None,
                                     "weight": "x0", "source": "eight_gaussians"},
        ScoreDistilled, _nodata, _noloss, shape=(2,), trainer=_sd_trainer,
        description="VSD/DMD one-step generator from eight-Gaussian draws to moons: real score moons_vp_x0, "
                    "fake score initialised from it")))
    for name, method, t_range, weight, what in (
            ("vsd_8g", "VSD/DMD", [0.02, 0.98], "x0", "VSD/DMD over t in [0.02, 0.98]"),
            ("vsd_8g_small_t", "VSD/DMD", [0.02, 0.1], "x0", "VSD/DMD at low noise only, t in [0.02, 0.1]"),
            ("sds_8g", "SDS", [0.02, 0.98], "eps", "SDS (Dirac generator, no fake score, DreamFusion's weight)")):
        out.append(register(Recipe(
            name, BUILDER, {**sd, "kind": "sd", "method": method, "teacher": "exact_8g", "fake_init": "8g_vp_x0",
                            "t_range": t_range, "init_center": [2.0, 0.0], "weight": weight},
            ScoreDistilled, _nodata, _noloss, shape=(2,), trainer=_sd_trainer,
            description=f"{what}; exact eight-Gaussian teacher, generator started on the mode at (2, 0)")))
    out.append(register(Recipe(
        "gpd_8g", BUILDER, {"kind": "gpd", "teacher": "8g_cond", "omega_range": [1.0, 4.0], "seed": 0,
                            "train": {**_TRAIN, "steps": 3000, "lr": 1e-3, "ema": 0.995}},
        _gpd_model, _nodata, _noloss, shape=(2,), n_classes=8, trainer=_gpd_trainer,
        description="guided PD stage 1: omega-conditioned student of 8g_cond's CFG, omega in [1, 4] (1 = conditional)")))
    return out


DISTILL_RECIPES = _register_all() + _register_images()


def retrain(name: str, *, progress: bool = True) -> nn.Module:
    """Train a chapter-10 recipe live (the notebook's RETRAIN flag) and return it in eval mode (no file written)."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    recipe.trainer(model, recipe, device="cpu", progress=progress)
    return model.eval()


# -- the few-step bake-off (chapter 11) --------------------------------------------------------------------------
def _train_s(name: str) -> float:
    """The recipe's training time: one-thread CPU seconds where the zoo recorded them, else wall seconds."""
    entry = store.read_manifest(store.zoo_dir()).get(name, {})
    return float(entry.get("train_cpu_seconds", entry.get("train_seconds", float("nan"))))


def _entry(data: str, method: str, name: str, run, nfes: tuple[int, ...]) -> dict:
    cache = {}

    def sample(n: int, nfe: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if nfe not in nfes:
            raise ValueError(f"{method} on {data} runs with nfe in {list(nfes)}, got nfe={nfe!r}")
        if "model" not in cache:
            cache["model"] = zoo.load(name)
        teacher = "moons_vp_x0" if data == "moons" else "8g_to_moons"
        z = teacher_noise(teacher, n, generator=generator)
        with torch.no_grad():
            return run(cache["model"], z, nfe)

    return {"data": data, "method": method, "sample": sample, "train_s": _train_s(name), "zoo": name}


def few_step_entries() -> list[dict]:
    """Rows for chapter 11's few-step bake-off: {"data", "method", "sample", "train_s", "zoo"}.

    sample(n, nfe, generator) -> (n, 2) draws of the student (the noise from `generator`); an nfe the
    student cannot do raises ValueError.  "PD" is one row whose nfe picks the round (1, 2 or 4 steps).
    """
    out = []
    for data in ("moons", "8g_to_moons"):
        out.append(_entry(data, "KD", f"kd_{data}", lambda m, z, nfe: samplers.solve(
            m, z, distill.pd_grid(m.schedule, N_TEACHER, 1), "ddim"), (1,)))
        out.append(_entry(data, "PD", f"pd_{data}", lambda m, z, nfe: m.sample(z, nfe), (1, 2, 4)))
    out.append(_entry("moons", "VSD/DMD", "vsd_moons", lambda m, z, nfe: m.sample(z), (1,)))
    out.append(_entry("8g_to_moons", "VSD (8g source)", "vsd_8g_to_moons", lambda m, z, nfe: m.sample(z), (1,)))
    return out + image_entries()


def _image_entry(method: str, names: dict[int, str], run) -> dict:
    """A bake-off row on MNIST-5k: sample(n, nfe, generator, labels) -> (n, 1, 28, 28) in [-1, 1]."""
    cache = {}

    def sample(n: int, nfe: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        if nfe not in names:
            raise ValueError(f"{method} on mnist5k runs with nfe in {sorted(names)}, got nfe={nfe!r}")
        if nfe not in cache:
            cache[nfe] = zoo.load(names[nfe])
        labels = torch.arange(n) % 10 if labels is None else torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        x_T = randn((n, *IMAGE_SHAPE), generator=generator)
        with torch.no_grad():
            return torch.cat([run(cache[nfe], x_T[i:i + 500], nfe, labels[i:i + 500]).clamp(-1, 1)
                              for i in range(0, n, 500)])

    return {"data": "mnist5k", "method": method, "sample": sample, "nfes": tuple(sorted(names)),
            "train_s": sum(_train_s(v) for v in set(names.values())), "zoo": sorted(set(names.values()))}


GPD_NFES = (1, 2, 4, 8, 50)


def image_entries() -> list[dict]:
    """The MNIST-5k rows of the bake-off, for the students that are in the zoo (every one distils
    CFG(mnist5k_cond, omega = 2)).  PD's nfe picks the round; its train_s sums the rounds' recipes.  The guided
    student runs DPM-Solver++(2M) at omega = 2 with ONE network call per evaluation (CFG makes two)."""
    built = store.read_manifest(store.zoo_dir())
    out = []
    if "kd_mnist5k" in built:
        out.append(_image_entry("KD", {1: "kd_mnist5k"}, lambda m, z, nfe, c: kd_image_map(m, z, c)))
    pd = {n: f"pd_mnist5k_{n}" for n in (4, 2, 1) if f"pd_mnist5k_{n}" in built}
    if pd:
        out.append(_image_entry("PD (DDIM on its grid)", pd,
                                lambda m, z, nfe, c: samplers.solve(m, z, image_pd_grid(nfe), "ddim", c=c)))
    if "vsd_mnist5k" in built:
        out.append(_image_entry("VSD/DMD (+ regression)", {1: "vsd_mnist5k"}, lambda m, z, nfe, c: m.sample(z, c)))
    if "gpd_mnist5k" in built:
        out.append(_image_entry("guided PD st. 1 (DPM-Solver++(2M), 1 call/NFE)", dict.fromkeys(GPD_NFES, "gpd_mnist5k"),
                                lambda m, z, nfe, c: samplers.solve(m.at(IMAGE_OMEGA), z, nfe=nfe, method="dpmpp_2m",
                                                                    c=c)))
    return out
