"""Chapter 11 recipes: flow-map students (CM by CD, CT and continuous CT; CTM; MeanFlow) on 2D data.

    student = dl.zoo.load("fm_8g_mf")                 # a FlowMap: student(x, s, t) ~ Psi_{s->t}(x)
    x0 = dl.solve(student, x_T, [1.0, 0.0], dl.flowmaps.gamma_solver(0.0))   # one step
    dl.recipes.flowmaps.few_step_entries()            # the rows of benchmarks/few_step.py

All on the linear path x_t = (1 - t) x0 + t eps ('flow' schedule, as the book's flow-map notebook), an MLP
(hidden 128, depth 3) of (x, s, t), stop-gradient targets theta^- = sg(theta).  Names (builder "flowmaps/1"):
    fm_8g_{cd, ct, cct, ctm, mf, mf_pfm0}   eight Gaussians (an exact mixture, so every map is held
                                            against the oracle); CD's teacher is the exact field
    fm_8g_mf_gap_pfm{25, 0}                 MeanFlow with every non-anchor pair at s - t >= 0.3 (the p_fm intervention)
    fm_moons_{cd, ct, ctm, mf}              two moons; CD's teacher: the zoo's moons_flow
    fm_8g2m_{cd, ct, ctm, mf}               eight Gaussians (t = 1) -> moons (t = 0); CD's teacher: 8g_to_moons
    fm_8g2m_mfd, fm_8g2m_mfd3k              MeanFlow with the teacher's velocity (20000 / 3000 steps)
    fm_mnist_{cd, ctm}                      MNIST-5k students of CFG(mnist5k_cond, 2), from the teacher's weights
"""
from __future__ import annotations

import torch

from .. import datasets, flowmaps, zoo
from ..schedules import get_schedule
from ..zoo import Recipe, register
from . import images as _image_recipes  # noqa: F401  (registers mnist5k_cond, the image teacher)

__all__ = ["BUILDER", "IMAGE_BUILDER", "FLOWMAP_RECIPES", "IMAGE_FLOWMAP_RECIPES", "image_recipe", "image_teacher",
           "sample_image_student", "METHODS", "fm_recipe", "teacher_of", "retrain", "few_step_entries",
           "sample_student"]

BUILDER = "flowmaps/1"
_TRAIN = {"batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}
_NET = {"dim": 2, "hidden": 128, "depth": 3, "t_dim": 16, "t_scale": 20.0}
_STEPS = {"cd": 4000, "ct": 4000, "cct": 3000, "ctm": 3000, "mf": 3000}   # JVP and CTM steps cost about 2-3x
METHODS = {"cd": "cm", "ct": "cm", "cct": "cm", "ctm": "ctm_g", "mf": "ctm_v"}
GAMMA = {"cd": 1.0, "ct": 1.0, "cct": 1.0, "ctm": 0.0, "mf": 0.0}   # the sampler each method is read with
_DATA = {"8g": ("eight_gaussians", None), "moons": ("moons", None), "8g2m": ("moons", "eight_gaussians")}
_TEACHERS = {"8g": "exact", "moons": "moons_flow", "8g2m": "8g_to_moons"}


def _model(spec: dict) -> flowmaps.FlowMap:
    return flowmaps.FlowMap(get_schedule(**spec["schedule"]), METHODS[spec["method"]], **spec["net"])


def _data(spec: dict):
    return lambda n, *, generator=None: datasets.sample_2d(spec["data"], n, generator=generator).float()


def _source(spec: dict):
    if spec["source"] is None:
        return None
    return lambda n, *, generator=None: datasets.sample_2d(spec["source"], n, generator=generator).float()


def teacher_of(spec: dict):
    """The teacher a distilling recipe reads: 'exact' (the eight-Gaussian mixture's exact field) or a zoo name."""
    name = spec.get("teacher")
    if name is None:
        return None
    if name == "exact":
        return datasets.eight_gaussians_mixture().model(get_schedule(**spec["schedule"]))
    return zoo.load(name)


def _loss(spec: dict):
    sched, method, kw = get_schedule(**spec["schedule"]), spec["method"], dict(spec["loss"])
    teacher, source = teacher_of(spec), _source(spec)
    if method in ("cd", "ct"):
        cls = flowmaps.CDLoss if method == "cd" else flowmaps.CTLoss
        return cls(sched, teacher, **kw, source=source) if method == "cd" else cls(sched, **kw, source=source)
    if method == "cct":
        return flowmaps.ContinuousCTLoss(sched, teacher, **kw, source=source)
    if method == "ctm":
        return flowmaps.CTMLoss(sched, teacher, **kw, source=source)
    return flowmaps.MeanFlowLoss(sched, teacher, **kw, source=source)


def fm_recipe(name: str, data: str, method: str, *, distill: bool = False, loss: dict | None = None, steps: int | None = None,
              lr: float | None = None, seed: int = 0, net: dict | None = None, batch: int | None = None,
              description: str = "") -> Recipe:
    """Register a flow-map student: data in {'8g', 'moons', '8g2m'}, method in METHODS; distill=True reads
    the data's teacher (CD always does)."""
    if data not in _DATA:
        raise ValueError(f"data must be one of {sorted(_DATA)}, got {data!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    target, source = _DATA[data]
    steps = steps or _STEPS[method]
    spec = {"data": target, "source": source, "short": data, "method": method, "schedule": {"name": "flow"},
            "teacher": _TEACHERS[data] if (distill or method == "cd") else None, "loss": dict(loss or {}),
            "net": {**_NET, **(net or {})}, "seed": seed,
            "train": {**_TRAIN, "steps": steps, **({"lr": lr} if lr else {}), **({"batch": batch} if batch else {})}}
    return register(Recipe(name, BUILDER, spec, _model, _data, _loss, shape=(2,), description=description))


def retrain(name: str, *, progress: bool = True) -> torch.nn.Module:
    """Train recipe `name` live (the notebook's RETRAIN flag) and return the model in eval mode."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    zoo._fit(model, recipe, device="cpu", progress=progress)
    return model.eval()


def sample_student(model: flowmaps.FlowMap, n: int, nfe: int, *, gamma: float = 0.0,
                   generator: torch.Generator | None = None, source: str | None = None) -> torch.Tensor:
    """n samples of a flow-map student with nfe uniform gamma-sampling steps from t = 1 to 0, (n, 2).

    x_1 ~ N(0, I), or the source set's points for transport students (which also re-noise with source points)."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an int >= 1, got {nfe!r}")
    x_T = (datasets.sample_2d(source, n, generator=generator).float() if source else
           torch.randn(n, 2, generator=generator))
    grid = torch.linspace(1.0, 0.0, nfe + 1).tolist()
    noise = ((lambda x, g: datasets.sample_2d(source, x.shape[0], generator=g).float().to(x)) if source else None)
    with torch.no_grad():
        return flowmaps.gamma_sample(model, x_T, grid, model.schedule, gamma, generator, noise)


_NOT_BENCHED = {"fm_8g2m_mfd3k"}      # the chapter's intervention partner (trained like fm_8g2m_mf), not a contender


def few_step_entries() -> list[dict]:
    """Rows for benchmarks/few_step.py: {'data', 'method', 'sample'(n, nfe, generator), 'train_s'} for every
    moons / 8g_to_moons student whose checkpoint is in the zoo (the others are skipped), and the MNIST-5k
    students ('data' mnist5k, 'sample'(n, nfe, generator, labels) -> (n, 1, 28, 28) in [-1, 1])."""
    from .. import store

    manifest = store.read_manifest(store.zoo_dir())
    out = []
    for recipe in FLOWMAP_RECIPES:
        short = recipe.spec["short"]
        if short not in ("moons", "8g2m") or recipe.name not in manifest or recipe.name in _NOT_BENCHED:
            continue
        method = recipe.spec["method"]

        def sample(n, nfe, generator=None, *, _name=recipe.name, _m=method, _src=recipe.spec["source"]):
            return sample_student(zoo.load(_name), n, nfe, gamma=GAMMA[_m], generator=generator, source=_src)
        out.append({"data": "moons" if short == "moons" else "8g_to_moons",
                    "method": {"cd": "CD", "ct": "CT", "ctm": "CTM", "mf": "MeanFlow", "cct": "cCT"}[method]
                    + (" (distilled)" if recipe.spec["teacher"] and method != "cd" else ""),
                    "sample": sample, "train_s": _train_s(manifest[recipe.name])})
    for recipe in IMAGE_FLOWMAP_RECIPES:
        if recipe.name not in manifest:
            continue

        method = recipe.spec["method"]

        def sample_img(n, nfe, generator=None, labels=None, *, _name=recipe.name, _g=IMAGE_GAMMA[method]):
            return sample_image_student(zoo.load(_name), n, nfe, labels=labels, gamma=_g, generator=generator)
        out.append({"data": "mnist5k", "method": f"{method.upper()} (gamma = {IMAGE_GAMMA[method]:g})",
                    "sample": sample_img, "train_s": _train_s(manifest[recipe.name]), "nfes": (1, 2, 4)})
    return out


def _train_s(entry: dict) -> float:
    """One-thread CPU seconds of a build where recorded (train_cpu_seconds), else its wall seconds."""
    return float(entry.get("train_cpu_seconds", entry.get("train_seconds", float("nan"))))


# -- MNIST-5k students of the guided teacher (the bake-off's image rows) -------------------------------------
IMAGE_TEACHER, IMAGE_OMEGA, NULL_LABEL = "mnist5k_cond", 2.0, 10   # = benchmarks/few_step.py's teacher
IMAGE_BUILDER = "flowmaps_img/1"
IMAGE_GAMMA = {"cd": 1.0, "ctm": 0.0}         # the sampler each image student is read with


def _image_model(spec: dict) -> flowmaps.ImageFlowMap:
    """The student's architecture (the teacher's U-Net, grown by the second time for 'ctm'); the trainer
    copies the teacher's weights in before training."""
    from .. import nets
    net = nets.UNet(**{**spec["net"], "mults": tuple(spec["net"]["mults"]), "extra": int(spec["param"] == "ctm")})
    return flowmaps.ImageFlowMap(net, get_schedule(**spec["schedule"]), spec["param"])


def _image_data(spec: dict):
    from .. import images
    return images.load_mnist5k("train")                       # (x in [-1, 1], labels)


def image_teacher():
    """The field every image student distills: CFG(mnist5k_cond, omega = 2) on the whole path (§8.3)."""
    from ..guidance import CFG
    return CFG(zoo.load(IMAGE_TEACHER), IMAGE_OMEGA, NULL_LABEL)


def _image_loss(spec: dict):
    """CD (or its two-time form for 'ctm') with one guided-teacher DDIM step, the squared distance averaged over
    pixels."""
    cls = flowmaps.TwoTimeCDLoss if spec["method"] == "ctm" else flowmaps.CDLoss
    base = cls(get_schedule(**spec["schedule"]), image_teacher(), **spec["loss"])
    pixels = float(torch.tensor(spec["shape"]).prod())

    def loss(model, x0, c=None, *, generator=None):
        return base(model, x0, c, generator=generator) / pixels
    return loss


def _image_trainer(model: flowmaps.ImageFlowMap, recipe: Recipe, *, device, progress: bool) -> dict:
    """Copy the teacher's network into the student (it starts as the teacher's denoiser), then train.fit."""
    teacher = zoo.load(IMAGE_TEACHER)
    grown = flowmaps.ImageFlowMap.from_teacher(teacher, model.param)
    model.net.load_state_dict(grown.net.state_dict())
    return zoo._fit(model, recipe, device=device, progress=progress)


def image_recipe(name: str, method: str = "cd", *, N: int = 12, steps: int = 1300, batch: int = 32, lr: float = 2e-4,
                 ema: float = 0.995, description: str = "") -> Recipe:
    """An MNIST-5k flow-map student of CFG(mnist5k_cond, 2): method 'cd' (consistency distillation, one
    guided-teacher DDIM step, N intervals of [0, 1]) or 'ctm' (the two-time student on UNet.grow, TwoTimeCDLoss)."""
    if method not in IMAGE_GAMMA:
        raise ValueError(f"image method must be one of {sorted(IMAGE_GAMMA)}, got {method!r}")
    teacher = zoo.get(IMAGE_TEACHER)
    spec = {"data": "mnist5k", "method": method, "param": "cm" if method == "cd" else "ctm", "schedule": dict(teacher.spec["schedule"]),
            "teacher": IMAGE_TEACHER, "omega": IMAGE_OMEGA, "shape": list(teacher.shape),
            "net": {"in_ch": 1, "base": teacher.spec["net"]["base"], "mults": list(teacher.spec["net"]["mults"]),
                    "n_classes": teacher.n_classes},
            "loss": {"N": N, "huber_c": 0.0}, "seed": 0,
            "train": {"steps": steps, "batch": batch, "lr": lr, "lr_schedule": "cosine", "warmup": 50, "ema": ema,
                      "clip": 1.0}}
    return register(Recipe(name, IMAGE_BUILDER, spec, _image_model, _image_data, _image_loss, shape=teacher.shape,
                           n_classes=teacher.n_classes, description=description, trainer=_image_trainer))


def sample_image_student(model: flowmaps.ImageFlowMap, n: int, nfe: int, *, labels=None, gamma: float = 1.0,
                         generator: torch.Generator | None = None, batch: int = 250) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1] of class labels (default 0, 1, ..., 9, 0, ...) by nfe uniform
    gamma-sampling steps from t = 1 to 0 (gamma = 1: CM multistep, the only choice for a 'cm' student)."""
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an int >= 1, got {nfe!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    labels = torch.arange(n) % 10 if labels is None else torch.as_tensor(labels).long()
    if labels.shape != (n,) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"labels must be (n,) = ({n},) digits in 0..9, got shape {tuple(labels.shape)}")
    grid, out = torch.linspace(1.0, 0.0, nfe + 1).tolist(), []
    with torch.no_grad():
        for i in range(0, n, batch):
            c = labels[i:i + batch]
            x_T = torch.randn((len(c), 1, 28, 28), generator=generator)
            out.append(flowmaps.gamma_sample(lambda x, s, t, _c=c: model(x, s, t, _c), x_T, grid, model.schedule,
                                             gamma, generator).clamp(-1, 1))
    return torch.cat(out)


def _register_all() -> list[Recipe]:
    out = []
    huber = {"huber_c": 0.03}
    for data, label in (("8g", "eight Gaussians (exact mixture)"), ("moons", "two moons"),
                        ("8g2m", "eight Gaussians -> moons")):
        out.append(fm_recipe(f"fm_{data}_cd", data, "cd", loss={"N": 32, **huber},
                             description=f"{label}: consistency distillation, one teacher DDIM step, N = 32"))
        out.append(fm_recipe(f"fm_{data}_ct", data, "ct", loss={"N": 32, **huber},
                             description=f"{label}: consistency training (one-point target), N = 32"))
        out.append(fm_recipe(f"fm_{data}_ctm", data, "ctm", loss={"lambda_dm": 1.0}, lr=1e-3 if data == "moons" else None,
                             description=f"{label}: CTM (g-parameterization), self-induced Euler solver, "
                                         f"lambda_DM = 1"))
        out.append(fm_recipe(f"fm_{data}_mf", data, "mf", loss={"p_fm": 0.25},
                             description=f"{label}: MeanFlow, JVP target, p_fm = 0.25"))
    # eight Gaussians -> moons, MeanFlow with the teacher's velocity instead of the one-point eps - x0: trained like
    # fm_8g2m_mf (the chapter's intervention), and tuned for the bake-off (more steps, within 3 CPU-minutes)
    for name, steps in (("fm_8g2m_mfd3k", 3000), ("fm_8g2m_mfd", 20000)):
        out.append(fm_recipe(name, "8g2m", "mf", distill=True, loss={"p_fm": 0.25}, steps=steps,
                             description=f"eight Gaussians -> moons: MeanFlow distilled (the 8g_to_moons teacher's "
                                         f"velocity as v), p_fm = 0.25, {steps} steps"))
    out.append(fm_recipe("fm_8g_cct", "8g", "cct", description="eight Gaussians: continuous-time CT (JVP, "
                                                                  "tangent normalization)"))
    out.append(fm_recipe("fm_8g_mf_pfm0", "8g", "mf", loss={"p_fm": 0.0},
                         description="eight Gaussians: MeanFlow with p_fm = 0 (no flow-matching anchor)"))
    for p_fm in (0.25, 0.0):       # the intervention: no pair near the diagonal except the p_fm ones
        out.append(fm_recipe(f"fm_8g_mf_gap_pfm{int(100 * p_fm)}", "8g", "mf", loss={"p_fm": p_fm, "min_gap": 0.3},
                             steps=2000, description=f"eight Gaussians: MeanFlow, p_fm = {p_fm}, other pairs with "
                                                     f"s - t >= 0.3, 2000 steps"))
    return out


FLOWMAP_RECIPES = _register_all()
IMAGE_FLOWMAP_RECIPES = [image_recipe("fm_mnist_cd", "cd", description="MNIST-5k: consistency distillation of "
                                      "CFG(mnist5k_cond, omega = 2), one teacher DDIM step, N = 12, from the teacher"),
                         image_recipe("fm_mnist_ctm", "ctm", description="MNIST-5k: two-time (CTM-style) student of "
                                      "CFG(mnist5k_cond, omega = 2) on UNet.grow(teacher, 1), one teacher DDIM step to "
                                      "s' then its own jump to t <= s', N = 12, from the teacher")]
