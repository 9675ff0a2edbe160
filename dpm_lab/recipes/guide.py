"""Chapter 08 recipes and measuring tools: the class-conditional mixture, a noise-aware classifier, the
tilted density on a grid.

    mix = dl.recipes.guide.mixture()                    # two classes of two Gaussians each, overlapping
    clf = dl.zoo.load("guide_clf2d")                    # a trained p_psi(c | x_t, t) for that mixture
    law = dl.recipes.guide.tilted_law(mix, c=0, omega=3.0)   # p(x|c)^omega p(x)^(1-omega) / Z on a grid

The exact p(c | x_t) (GaussianMixture.class_posterior) stays the reference for the trained classifier.
`GridLaw` holds a density on the cells of a regular grid: its exact cell probabilities, draws from it
(a cell, then uniform inside it) and the total variation between a sample's histogram and the law, so
a sampler is compared with a density that has no sampler of its own (the tilted one, §8.2).
Builder "guide_clf/1": bump it when Classifier2D or the training loop change what a spec means.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import guidance, nets, samplers
from ..gmm import GaussianMixture
from ..schedules import VPLinear, get_schedule
from ..utils import multinomial, rand, randn
from ..zoo import Recipe, register

__all__ = ["BUILDER", "mixture", "GridLaw", "tilted_law", "conditional_law", "spread", "GUIDE_RECIPES",
           "INTERVAL", "cfg_samples", "TASKS", "METHODS", "measurement", "inverse_model", "inverse_samples",
           "retrain"]

BUILDER = "guide_clf/1"
NULL = 2                      # the mixture's "no condition" label (classes 0 and 1)
SCHEDULE = VPLinear()
INTERVAL = (-1.0, 2.5)        # guide only where lambda_t = log(alpha_t / sigma_t) lies here (VP: 0.02 < t < 0.45)


def mixture() -> GaussianMixture:
    """The chapter's class-conditional mixture: class 0 = components 0, 1; class 1 = components 2, 3 (they overlap)."""
    return GaussianMixture([0.25, 0.25, 0.25, 0.25], [[-0.8, 0.4], [0.4, 1.4], [0.8, -0.4], [-0.4, -1.4]],
                           stds=[0.55, 0.45, 0.55, 0.45], labels=[0, 0, 1, 1])


@dataclass
class GridLaw:
    """A density on the n x n cells of the box [-lim, lim]^2: `probs` (n*n,) sums to 1 (rows are x2, columns x1)."""

    probs: torch.Tensor
    lim: float
    n: int

    @property
    def centres(self) -> torch.Tensor:
        """(n*n, 2) cell centres, in the order of `probs`."""
        xs = torch.linspace(-self.lim, self.lim, self.n + 1, dtype=torch.float64)
        xs = (xs[1:] + xs[:-1]) / 2
        X, Y = torch.meshgrid(xs, xs, indexing="xy")
        return torch.stack([X.ravel(), Y.ravel()], 1)

    def histogram(self, x: torch.Tensor) -> torch.Tensor:
        """Fractions of the points x (B, 2) in each cell (points outside the box fall in the border cells)."""
        ij = ((x.double().cpu() + self.lim) / (2 * self.lim) * self.n).floor().long().clamp(0, self.n - 1)
        h = torch.bincount(ij[:, 1] * self.n + ij[:, 0], minlength=self.n * self.n).double()
        return h / h.sum()

    def tv(self, x: torch.Tensor) -> float:
        """Total variation 1/2 sum |histogram(x) - probs| between a sample and the law."""
        return float(0.5 * (self.histogram(x) - self.probs).abs().sum())

    def sample(self, m: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """m draws (m, 2): a cell by its probability, then a uniform point inside it."""
        k = multinomial(self.probs, m, generator=generator)
        h = 2 * self.lim / self.n
        return self.centres[k.cpu()] + h * (rand((m, 2), generator=generator, dtype=torch.float64).cpu() - 0.5)

    def floor(self, m: int, *, repeats: int = 5, generator: torch.Generator | None = None) -> tuple[float, float]:
        """TV of m exact draws against the law itself: (mean, std over `repeats` draws), the Monte Carlo floor."""
        v = torch.tensor([self.tv(self.sample(m, generator=generator)) for _ in range(repeats)])
        return float(v.mean()), float(v.std())


def _law(log_p, lim: float, n: int, sub: int = 4) -> GridLaw:
    """Cell probabilities of the density exp(log_p) (unnormalised), by a sub x sub midpoint rule in each cell."""
    fine = GridLaw(torch.zeros(1), lim, n * sub).centres
    lp = log_p(fine).reshape(n, sub, n, sub)                 # (row, sub-row, column, sub-column)
    cell = torch.logsumexp(lp.permute(0, 2, 1, 3).reshape(n, n, sub * sub), -1).ravel()
    return GridLaw(torch.softmax(cell, 0), lim, n)


def tilted_law(mix: GaussianMixture, c: int, omega: float, *, lim: float = 3.5, n: int = 40) -> GridLaw:
    """The tilted density p(x | c)^omega p(x)^(1 - omega) / Z at t = 0 on a grid (§8.2, §8.3); omega = 1: p(x | c)."""
    return _law(lambda x: omega * mix.log_prob(x, c=c) + (1 - omega) * mix.log_prob(x), lim, n)


def conditional_law(mix: GaussianMixture, c: int, *, lim: float = 3.5, n: int = 40) -> GridLaw:
    """p(x | c) on the same grid."""
    return tilted_law(mix, c, 1.0, lim=lim, n=n)


def spread(x: torch.Tensor) -> float:
    """A diversity measure: sqrt of the mean per-coordinate variance of the sample (B, D)."""
    return float(x.double().var(0).mean().sqrt())


# -- the noise-aware classifier p_psi(c | x_t, t) (§8.2) ------------------------------------------
def _model(spec: dict) -> nets.Classifier2D:
    return nets.Classifier2D(2, spec["n_classes"], spec["hidden"], spec["depth"])


def _data(spec: dict) -> GaussianMixture:
    return mixture()


def _loss(spec: dict):
    """Cross-entropy of the classifier on x_t = alpha_t x0 + sigma_t eps, t uniform on [t_min, 1], labels from x0."""
    sched = get_schedule(spec["schedule"])

    def loss(model, x0, c, *, generator=None):
        t = spec["t_min"] + (1 - spec["t_min"]) * rand((x0.shape[0],), generator=generator, dtype=torch.float64)
        co = sched.coeffs(t)
        eps = randn(x0.shape, generator=generator, dtype=torch.float64)
        x_t = co.alpha[:, None] * x0 + co.sigma[:, None] * eps
        return F.cross_entropy(model(x_t.float(), t.float()), c, reduction="none")
    return loss


def _train(model, recipe: Recipe, *, device="cpu", progress: bool = False) -> dict:
    """Adam with a cosine learning rate on fresh mixture draws each step; the manifest records the
    cross-entropy gap to the exact classifier on held-out draws (the Bayes risk is the floor)."""
    spec, mix = recipe.spec, recipe.data(recipe.spec)
    g = torch.Generator().manual_seed(spec["seed"])
    loss_fn = recipe.loss(spec)
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
    lr = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec["steps"])
    model.train()
    for step in range(spec["steps"]):
        x0, c = mix.sample(spec["batch"], generator=g, dtype=torch.float64, return_labels=True)
        loss = loss_fn(model, x0, c, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        if progress and (step + 1) % 1000 == 0:
            print(f"  {recipe.name} step {step + 1}/{spec['steps']}: loss {loss.item():.4f}")
    model.eval()
    return {"final_loss": round(loss.item(), 5), "threads": torch.get_num_threads()}


def _recipe() -> Recipe:
    spec = {"n_classes": 2, "hidden": 64, "depth": 3, "schedule": "vp", "t_min": 1e-3, "steps": 4000,
            "batch": 512, "lr": 3e-3, "seed": 0}
    return register(Recipe("guide_clf2d", BUILDER, spec, _model, _data, _loss, shape=(2,), n_classes=2,
                           trainer=_train, description="noise-aware classifier p(c | x_t, t) (MLP) for the chapter 08 "
                                                       "mixture, VP schedule, cross-entropy with t uniform"))


GUIDE_RECIPES = [_recipe()]


# -- samplers on the exact mixture ------------------------------------------------------------------
def _prior(n: int, seed: int) -> torch.Tensor:
    return randn((n, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def cfg_samples(mix: GaussianMixture, c: int, omega: float, *, interval: bool = False, n: int = 2000, nfe: int = 50,
                seed: int = 0, method: str = "dpmpp_2m") -> torch.Tensor:
    """n samples (n, 2) of exact CFG (§8.3) on the mixture, VP schedule, from a seeded prior; interval=True guides
    only where lambda_t lies in INTERVAL."""
    cfg = guidance.CFG(mix.model(SCHEDULE), omega, mix.n_classes, c=c, lam_interval=INTERVAL if interval else None)
    with torch.no_grad():
        return samplers.solve(cfg, _prior(n, seed), nfe=nfe, method=method)


# the 2D inverse problems: (A, y, sigma_y) for y = A x0 + sigma_y z
TASKS = {"inpaint (see x1)": ([[1.0, 0.0]], [0.6], 0.1),
         "denoise": ([[1.0, 0.0], [0.0, 1.0]], [0.1, 0.2], 0.5),
         "blur (see (x1 + x2) / 2)": ([[0.5, 0.5]], [0.2], 0.1)}
METHODS = ("exact posterior", "Score-SDE", "ILVR", "DPS", "PiGDM")


def measurement(task: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A (M, 2), y (M,), sigma_y) of a task in TASKS, float64."""
    A, y, sy = TASKS[task]
    return torch.tensor(A, dtype=torch.float64), torch.tensor(y, dtype=torch.float64), sy


def inverse_model(mix: GaussianMixture, task: str, method: str, scale: float = 1.0):
    """The guided Model of `method` for `task` on the exact prior (the exact posterior's own model for
    'exact posterior'); PiGDM takes the prior's per-coordinate variance as its data variance."""
    A, y, sy = measurement(task)
    prior = mix.model(SCHEDULE)
    if method == "exact posterior":
        return mix.posterior(A, y, sy).model(SCHEDULE)
    op = guidance.matrix_operator(A)
    if method == "PiGDM":
        return guidance.PiGDM(prior, op, y, sy, scale, data_var=float(mix.cov().diagonal().mean()))
    cls = {"Score-SDE": guidance.ScoreSDEProjection, "ILVR": guidance.ILVRProjection, "DPS": guidance.DPS}[method]
    return cls(prior, op, y, sy, scale)


def inverse_samples(mix: GaussianMixture, task: str, method: str, *, scale: float = 1.0, n: int = 1000, nfe: int = 50,
                    seed: int = 0) -> torch.Tensor:
    """n samples (n, 2) of `method` on `task` with DDIM (one evaluation per step) from a seeded prior."""
    with torch.no_grad():
        return samplers.solve(inverse_model(mix, task, method, scale), _prior(n, seed), nfe=nfe, method="ddim")


def retrain(name: str = "guide_clf2d", *, progress: bool = True) -> torch.nn.Module:
    """Train the classifier recipe live (for the notebook's RETRAIN flag); the model in eval mode."""
    from .. import zoo
    recipe = zoo.get(name)
    model = recipe.new_model()
    _train(model, recipe, progress=progress)
    return model.eval()
