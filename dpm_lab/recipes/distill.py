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
    vsd_8g, vsd_8g_small_t, sds_8g   one-step generators on the exact eight Gaussians, all started on ONE mode:
                                  VSD over t in [0.02, 0.98], VSD over t in [0.02, 0.1] only (reverse KL at
                                  low noise: the intervention), and SDS (Dirac generator, no fake score)
    gpd_8g                        guided PD stage 1: an omega-conditioned student of 8g_cond's CFG, omega in [1, 4]
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import datasets, distill, losses, samplers, store, zoo
from ..schedules import get_schedule
from ..train import fit, lr_at
from ..utils import randn
from ..zoo import Recipe, register

__all__ = ["BUILDER", "PDRounds", "ScoreDistilled", "DISTILL_RECIPES", "retrain", "teacher_noise", "few_step_entries",
           "SNAP_TIMES", "N_TEACHER"]

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
    z_snap = randn((_SNAP_N, 2), generator=torch.Generator().manual_seed(7))
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
                    x = model.generator(randn((B, 2), generator=g))
                lf = fake_loss(model.fake, x, generator=g).mean()
                opt_f.zero_grad()
                lf.backward()
                opt_f.step()
        for grp in opt_g.param_groups:
            grp["lr"] = spec["lr"] * rate
        x = model.generator(randn((B, 2), generator=g))
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


DISTILL_RECIPES = _register_all()


def retrain(name: str, *, progress: bool = True) -> nn.Module:
    """Train a chapter-10 recipe live (the notebook's RETRAIN flag) and return it in eval mode (no file written)."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    recipe.trainer(model, recipe, device="cpu", progress=progress)
    return model.eval()


# -- the few-step bake-off (chapter 11) --------------------------------------------------------------------------
def _train_s(name: str) -> float:
    return float(store.read_manifest(store.zoo_dir()).get(name, {}).get("train_seconds", float("nan")))


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
    return out
