"""Chapter 09 explorers: fast PF-ODE solvers against the exact flow of a Gaussian mixture.

    SolverLab            method, time grid, schedule, NFE: the error against the exact flow map on a
                         log-log plot with slope guides, the solver's paths beside the exact ones,
                         and its final samples beside the exact end points
    StepAnatomyExplorer  one DEIS (noise form) or DPM-Solver++ (data form) step at a time: the anchors,
                         the extrapolation polynomial, the exact integral against the exponential
                         kernel, and the step's own (local) error
    EtaExplorer          the eta slider from DDIM (eta = 0) to DDPM (eta = 1) at a chosen NFE: paths from
                         the same x_T beside the exact PF-ODE paths, final samples beside exact samples,
                         and W2 to exact samples (with its floor) against eta

All run on exact mixture fields (`lab_mixture`), so the only error drawn is the solver's
discretization error.  Course convention: t = 0 data, t = 1 noise; lambda = log(alpha/sigma).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle
from matplotlib.ticker import NullLocator

from .. import fast_solvers, metrics, samplers, viz
from ..fast_solvers import fitted_order  # noqa: F401  (re-exported: the notebook and benchmarks use it from here)
from ..gmm import GaussianMixture
from ..grids import GRIDS, time_grid
from ..schedules import EDM, RectifiedFlow, Schedule, VPLinear
from ..steps import coeffs, time_at_lam
from ..utils import randn
from .base import Explorer, InvalidSelection

__all__ = ["SolverLab", "StepAnatomyExplorer", "EtaExplorer", "ETA_VALUES", "ETA_NFES", "lab_mixture", "lab_schedules", "LAB_METHODS", "LAB_NFES",
           "convergence", "fitted_order"]

LAB_METHODS = ("euler", "heun", "ddim", "deis", "dpm_solver_2", "dpm_solver_3", "dpmpp_2s", "dpmpp_2m", "dpmpp_3m",
               "edm")
LAB_NFES = (4, 8, 16, 32)                 # doublings: an order-p solver divides its error by 2^p per step right


def lab_mixture() -> GaussianMixture:
    """The anisotropic 3-component 2-D mixture of Ch. 9 (and benchmarks/solvers.py): narrow, tilted modes."""
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]], [[0.02, 0.0], [0.0, 0.2]]]
    return GaussianMixture([0.3, 0.5, 0.2], [[-1.0, 0.5], [1.0, -0.3], [0.2, 1.5]], covs)


def lab_schedules() -> dict[str, Schedule]:
    """The schedules of the solver lab: VP (linear beta), EDM (alpha = 1, sigma up to 80), rectified flow."""
    return {"VP": VPLinear(), "EDM": EDM(), "flow": RectifiedFlow()}


def convergence(model, x_T: torch.Tensor, ref: torch.Tensor, method: str, nfes, *, spacing: str = "lambda",
                t_max: float = 1.0, **opts: Any) -> list[float]:
    """Per-sample RMSE at t_min against `ref` of `method` run with each NFE budget (time_grid kind `spacing`).

    The run is samplers.solve on time_grid(schedule, steps_for_nfe(method, nfe), spacing, t_max=t_max); ref is the
    exact flow map of x_T from t_max to schedule.t_eps.  Used for the measured-order table of Ch. 9 (the notebook and
    benchmarks/solvers.py --orders).  It lives here, not in fast_solvers, because it drives samplers, which is
    built on fast_solvers (the layer table allows no cycle); fast_solvers.fitted_order reads the order off.
    """
    out = []
    for nfe in nfes:
        grid = time_grid(model.schedule, samplers.steps_for_nfe(method, nfe, **opts), spacing, t_max=t_max)
        out.append(_rmse(samplers.solve(model, x_T, grid, method, **opts), ref))
    return out


def _rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Per-sample RMSE sqrt(mean_b ||x_b - ref_b||^2)."""
    return float((x - ref).pow(2).sum(-1).mean().sqrt())



def _density_backdrop(ax, density, lim: float) -> None:
    """The mixture's density in grey behind a square, equal-aspect [-lim, lim]^2 panel (SolverLab, EtaExplorer)."""
    ax.imshow(density, origin="lower", extent=(-lim, lim, -lim, lim), cmap="Greys", alpha=0.6, interpolation="bilinear")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal", adjustable="box")

class SolverLab(Explorer):
    """Solver error against NFE on exact mixture fields (§9.2-9.6).

    Left: log-log error at t_min against the exact PF-ODE flow map (DOP853, rtol 1e-10) for NFE in
    LAB_NFES, with guides of slope -1, -2, -3 and the chosen NFE marked.  Middle: the solver's paths
    (its grid nodes as dots) over the exact paths (grey).  Right: its final samples beside the exact
    end points over the data density.
    Controls: method (LAB_METHODS), grid (grids.GRIDS), schedule (lab_schedules()), nfe (LAB_NFES).
    A selection a solver cannot run (a noise-form step from alpha = 0, a log-SNR grid on the flow
    schedule, whose lambda is -inf at t = 1) shows the solver's message.  `update()` returns
    'nfes', 'errors', 'paths' {nfe: (n+1, P, 2)}, 'finals' {nfe: (B, 2)}, 'ref' (B, 2), 'exact_paths'.
    """

    compute_keys = ("method", "grid", "schedule")
    clear_axes = False
    figsize = (11.0, 3.9)
    axes_grid = (1, 3)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.13, "top": 0.82, "wspace": 0.28}

    def __init__(self, mixture: GaussianMixture | None = None, *, n: int = 40, n_paths: int = 10, seed: int = 0,
                 **initial: Any) -> None:
        self.mixture = mixture or lab_mixture()
        self.schedules = lab_schedules()
        self.n, self.n_paths = n, min(n_paths, n)
        g = torch.Generator().manual_seed(seed)
        x0 = self.mixture.sample(n, generator=g, dtype=torch.float64)
        z = randn((n, 2), generator=g, dtype=torch.float64)
        self._start, self._exact = {}, {}
        for name, sch in self.schedules.items():              # x_T ~ p_1 exactly, and its exact flow
            c1 = coeffs(sch, 1.0)
            x_T = c1.alpha * x0 + c1.sigma * z
            dense = time_grid(sch, 60, "lambda", t_max=0.999) if name == "flow" else time_grid(sch, 60, "lambda")
            times = torch.cat([torch.tensor([1.0], dtype=torch.float64), dense[dense < 1.0]])
            self._start[name] = x_T
            self._exact[name] = self.mixture.flow(x_T, times, sch, rtol=1e-9, atol=1e-9)   # (61, n, 2); last: t_eps
        self._lim = 3.0
        _, _, dense_pts = viz.grid_points(self._lim, 60)
        self._density = torch.exp(self.mixture.log_prob(dense_pts)).reshape(60, 60).numpy()
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"method": W.Dropdown(options=list(LAB_METHODS), value="dpmpp_2m", description="method"),
                "grid": W.Dropdown(options=list(GRIDS), value="lambda", description="grid"),
                "schedule": W.Dropdown(options=list(self.schedules), value="VP", description="schedule"),
                "nfe": W.SelectionSlider(options=list(LAB_NFES), value=16, description="NFE", continuous_update=False)}

    def compute(self, method: str, grid: str, schedule: str) -> dict[str, Any]:
        sch = self.schedules[schedule]
        model, x_T = self.mixture.model(sch), self._start[schedule]
        ref, exact = self._exact[schedule][-1], self._exact[schedule]
        nfes, errors, paths, finals, problem = [], [], {}, {}, None
        for nfe in LAB_NFES:
            try:
                traj = samplers.trajectory(model, x_T, nfe=nfe, method=method, spacing=grid)
            except ValueError as err:
                problem = str(err)
                continue
            nfes.append(nfe)
            errors.append(_rmse(traj[-1], ref))
            paths[nfe], finals[nfe] = traj[:, :self.n_paths], traj[-1]
        if not nfes:
            raise InvalidSelection(f"{method} on the {grid} grid under {schedule}: {problem}")
        return {"method": method, "grid": grid, "schedule": schedule, "nfes": nfes, "errors": errors,
                "paths": paths, "finals": finals, "ref": ref, "exact_paths": exact[:, :self.n_paths]}

    def _setup(self) -> None:
        ax_err, ax_path, ax_end = self.fig.axes
        nan = [np.nan]
        self._err_line = self.animated(ax_err.loglog(nan, nan, "o-", color="C0", ms=4, label="solver")[0])
        self._guides = [self.animated(ax_err.loglog(nan, nan, style, color="0.55", lw=0.9, label=f"slope -{p}")[0])
                        for p, style in ((1, ":"), (2, "--"), (3, "-."))]
        self._mark = self.animated(ax_err.loglog(nan, nan, "o", ms=11, mfc="none", mec="C3", mew=1.5,
                                                 label="chosen NFE")[0])
        ax_err.set_xlim(3.2, 40)
        ax_err.set_xticks(list(LAB_NFES), [str(v) for v in LAB_NFES])
        ax_err.xaxis.set_minor_locator(NullLocator())
        ax_err.set_ylim(1e-5, 5)
        ax_err.set_xlabel("NFE", fontsize=8)
        ax_err.set_ylabel("RMSE at t_min vs exact flow map", fontsize=8)
        ax_err.legend(fontsize=7, loc="lower left")
        ax_err.set_title("error against NFE (log-log)", fontsize=9)
        for ax in (ax_path, ax_end):
            _density_backdrop(ax, self._density, self._lim)
            ax.tick_params(labelsize=7)
        ax_err.tick_params(labelsize=7)
        self._exact_lines = self.animated(LineCollection([], colors="0.2", linewidths=2.2, alpha=0.5, label="exact paths"))
        self._solver_lines = self.animated(LineCollection([], colors="C3", linewidths=0.9, label="solver paths"))
        ax_path.add_collection(self._exact_lines)
        ax_path.add_collection(self._solver_lines)
        self._nodes = self.animated(ax_path.scatter(nan, nan, s=2.5, color="C3", zorder=3, label="grid nodes"))
        ax_path.legend(fontsize=7, loc="upper right")
        self._path_title = self.animated(ax_path.set_title(" ", fontsize=9))
        self._note = self.animated(ax_path.text(0, 0, "", ha="center", fontsize=9, zorder=5))
        self._ref = self.animated(ax_end.scatter(nan, nan, s=12, color="k", marker="x", lw=0.8,
                                                 label="exact end points"))
        self._fin = self.animated(ax_end.scatter(nan, nan, s=10, color="C3", alpha=0.8, label="solver"))
        ax_end.legend(fontsize=7, loc="upper right")
        ax_end.set_title("final samples at t_min", fontsize=9)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_err_line"):
            self._setup()
        nfes, errs = np.array(data["nfes"], float), np.array(data["errors"])
        nfe = values["nfe"]
        self._err_line.set_data(nfes, errs)
        for p, line in enumerate(self._guides, start=1):
            line.set_data(nfes, errs[0] * (nfes / nfes[0]) ** -p)
        self._exact_lines.set_segments(list(np.transpose(viz.to_numpy(data["exact_paths"]), (1, 0, 2))))
        self._ref.set_offsets(viz.to_numpy(data["ref"]))
        head = f"{data['method']} on the {data['grid']} grid under {data['schedule']}"
        if nfe not in data["paths"]:
            self._mark.set_data([np.nan], [np.nan])
            self._solver_lines.set_segments([])
            self._nodes.set_offsets(np.full((1, 2), np.nan))
            self._fin.set_offsets(np.full((1, 2), np.nan))
            self._note.set_text(f"NFE {nfe} is below one\nstep of {data['method']}")
            self._path_title.set_text("paths")
            self._title.set_text(f"{head}: NFE {nfe} is too small for one step")
            return
        err = errs[data["nfes"].index(nfe)]
        self._mark.set_data([nfe], [err])
        p = viz.to_numpy(data["paths"][nfe])
        self._solver_lines.set_segments(list(np.transpose(p, (1, 0, 2))))
        self._nodes.set_offsets(p.reshape(-1, 2))
        self._fin.set_offsets(viz.to_numpy(data["finals"][nfe]))
        self._note.set_text("")
        self._path_title.set_text(f"paths at NFE {nfe} ({p.shape[0] - 1} steps)")
        self._title.set_text(f"{head}: NFE {nfe}, RMSE {err:.2e} (n = {self.n})")


# -- one step of DEIS / DPM-Solver++ -------------------------------------------------------------------------
ANATOMY_FORMS = {"DEIS (noise form, eps)": "eps", "DPM-Solver++ (data form, x0)": "x0"}


class StepAnatomyExplorer(Explorer):
    """One exponential-integrator step (§9.3-9.5) on the exact path of one point, taken apart.

    The run uses n steps uniform in lambda from t = 1 to t_eps (VP).  At step i, from lambda_s to
    lambda_t = lambda_s + h, the solver knows the predictions (eps or x0) at the last `order` grid
    times (anchors, taken on the EXACT path, so the step's error is its own), fits the polynomial
    through them in lambda and integrates it exactly against the kernel (e^{h-u} in the noise form,
    e^{-(h-u)} in the data form):

        noise: x_t = (alpha_t/alpha_s) x_s - sigma_t int_0^h e^{h-u} eps(lambda_s + u) du
        data:  x_t = (sigma_t/sigma_s) x_s + alpha_t int_0^h e^{-(h-u)} x0(lambda_s + u) du

    Left: the prediction's first coordinate along the exact path against lambda, the anchors and the
    polynomial.  Middle: the integrand (kernel x prediction) over the step, exact and polynomial; the
    area between them times sigma_t (alpha_t) is the step's error.  Right: every step's local error
    ||x_t^step - x_t^exact||, the chosen one highlighted.
    Controls: form (ANATOMY_FORMS), order (1-3), n (steps), step (0..n-1, follows n).
    `update()` returns 'lam' (n+1,), 'local_errors' (n,) and 'steps', one dict per step with 'anchors'
    [(lam, value)], 'integral_exact', 'integral_poly' (2,), 'x_step', 'x_exact', 'local_error';
    `current()` the chosen step's dict.
    """

    compute_keys = ("form", "order", "n")
    clear_axes = False
    figsize = (11.0, 3.7)
    axes_grid = (1, 3)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.14, "top": 0.82, "wspace": 0.3}
    N_CHOICES = (4, 5, 8, 10, 20)
    DENSE = 400

    def __init__(self, mixture: GaussianMixture | None = None, *, seed: int = 3, **initial: Any) -> None:
        self.mixture, self.schedule = mixture or lab_mixture(), VPLinear()
        self.model = self.mixture.model(self.schedule)
        sch = self.schedule
        self._lam_hi, self._lam_lo = coeffs(sch, sch.t_eps).lam, coeffs(sch, 1.0).lam
        lams = np.linspace(self._lam_lo, self._lam_hi, self.DENSE + 1)       # every choice of n divides DENSE
        ts = [1.0] + [time_at_lam(sch, float(v)) for v in lams[1:-1]] + [sch.t_eps]
        g = torch.Generator().manual_seed(seed)
        x0 = self.mixture.sample(1, generator=g, dtype=torch.float64)
        x_T = coeffs(sch, 1.0).alpha * x0 + coeffs(sch, 1.0).sigma * randn((1, 2), generator=g, dtype=torch.float64)
        self._lams, self._ts = lams, ts
        self._path = self.mixture.flow(x_T, ts, sch)[:, 0]                  # (DENSE+1, 2) exact path
        t_all = torch.tensor(ts, dtype=torch.float64)
        self._pred = {k: self.model.predict(self._path, t_all, k) for k in ("eps", "x0")}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"form": W.Dropdown(options=list(ANATOMY_FORMS), value=list(ANATOMY_FORMS)[0], description="solver"),
                "order": W.IntSlider(value=3, min=1, max=3, description="order", continuous_update=False),
                "n": W.Dropdown(options=list(self.N_CHOICES), value=8, description="steps"),
                "step": W.IntSlider(value=3, min=0, max=7, description="step i", continuous_update=False)}

    def update(self, **values: Any) -> Any:
        """As Explorer.update; a new n widens the step range first, so update(n=8, step=5) works from n = 4."""
        if values.get("n") in self.N_CHOICES:
            with self._hold():
                self.controls["step"].max = values["n"] - 1
        return super().update(**values)

    def sync_controls(self, values: dict[str, Any]) -> None:
        w = self.controls["step"]
        w.max = values["n"] - 1
        values["step"] = w.value = min(values["step"], values["n"] - 1)

    def current(self) -> dict[str, Any]:
        """The data of the step now drawn (the chosen step's dict, with the run's)."""
        data = self.data()
        return {**data, **data["steps"][self.values["step"]], "step": self.values["step"]}

    def _step(self, kind: str, order: int, n: int, i: int) -> dict[str, Any]:
        """The i-th step of n, from the exact state with exact anchors: its polynomial, integrals and error."""
        stride = self.DENSE // n
        js, jt = i * stride, (i + 1) * stride
        cs, ct = coeffs(self.schedule, self._ts[js]), coeffs(self.schedule, self._ts[jt])
        h = ct.lam - cs.lam
        k = min(order, i + 1)                                                # warm-up: the history is short
        anchors = [(float(self._lams[js - m * stride]), self._pred[kind][js - m * stride]) for m in range(k)]
        d = fast_solvers.taylor_from_history(anchors, k)
        x_s, x_t = self._path[js], self._path[jt]
        if kind == "eps":                                                     # noise form (§9.3, §9.4.2)
            poly_int = sum(fast_solvers.phi_int(m, h) * dm for m, dm in enumerate(d))
            exact_int = (ct.alpha / cs.alpha * x_s - x_t) / ct.sigma
            x_step = ct.alpha / cs.alpha * x_s - ct.sigma * poly_int
        else:                                                                 # data form (§9.5)
            poly_int = sum(fast_solvers.psi_int(m, h) * dm for m, dm in enumerate(d))
            exact_int = (x_t - ct.sigma / cs.sigma * x_s) / ct.alpha
            x_step = ct.sigma / cs.sigma * x_s + ct.alpha * poly_int
        return {"js": js, "jt": jt, "h": h, "k": k, "anchors": anchors, "taylor": d, "integral_poly": poly_int,
                "integral_exact": exact_int, "x_step": x_step, "x_exact": x_t,
                "local_error": float((x_step - x_t).norm())}

    def compute(self, form: str, order: int, n: int) -> dict[str, Any]:
        if n not in self.N_CHOICES:
            raise InvalidSelection(f"choose n in {self.N_CHOICES}")
        kind = ANATOMY_FORMS[form]
        steps = [self._step(kind, order, n, i) for i in range(n)]
        return {"form": form, "kind": kind, "order": order, "n": n, "steps": steps,
                "lam": self._lams[::self.DENSE // n], "local_errors": np.array([s["local_error"] for s in steps])}

    def _setup(self) -> None:
        ax_p, ax_i, ax_e = self.fig.axes
        nan = [np.nan]
        self._curve = self.animated(ax_p.plot(nan, nan, color="0.5", lw=1.0, label="exact, along the path")[0])
        self._span = self.animated(Rectangle((0, 0), 0, 1, transform=ax_p.get_xaxis_transform(), color="C1",
                                               alpha=0.2, label="this step"))
        ax_p.add_patch(self._span)
        self._poly = self.animated(ax_p.plot(nan, nan, "--", color="C3", lw=1.4, label="polynomial")[0])
        self._anch = self.animated(ax_p.plot(nan, nan, "o", color="C3", ms=6, label="anchors")[0])
        ax_p.set_xlim(self._lam_lo - 0.3, self._lam_hi + 0.3)
        ax_p.set_xlabel("log-SNR lambda (noise -> data)", fontsize=8)
        ax_p.legend(fontsize=7, loc="upper left")
        self._p_title = self.animated(ax_p.set_title(" ", fontsize=9))
        self._int_true = self.animated(ax_i.plot(nan, nan, color="0.3", lw=1.2, label="kernel x exact")[0])
        self._int_poly = self.animated(ax_i.plot(nan, nan, "--", color="C3", lw=1.4, label="kernel x polynomial")[0])
        self._fill = None
        ax_i.set_xlim(0, 1)
        ax_i.set_ylim(-1.3, 1.3)
        ax_i.axhline(0, color="0.8", lw=0.6)
        ax_i.set_xlabel("u / h across the step", fontsize=8)
        ax_i.set_ylabel("integrand / max |exact integrand|", fontsize=8)
        ax_i.legend(fontsize=7, loc="lower left")
        self._i_title = self.animated(ax_i.set_title(" ", fontsize=8))
        self._bars = self.animated(ax_e.plot(nan, nan, "o-", color="C0", ms=4, lw=0.8, label="each step")[0])
        self._chosen = self.animated(ax_e.plot(nan, nan, "o", color="C3", ms=9, label="this step")[0])
        ax_e.set_yscale("log")
        ax_e.set_ylim(1e-9, 3)
        ax_e.set_xlim(-0.5, max(self.N_CHOICES) - 0.5)
        ax_e.set_xlabel("step i (noise -> data)", fontsize=8)
        ax_e.set_ylabel("local error ||x_t^step - x_t^exact||", fontsize=8)
        ax_e.set_title("every step's own error", fontsize=9)
        ax_e.legend(fontsize=7, loc="lower left")
        for ax in self.fig.axes:
            ax.tick_params(labelsize=7)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not 0 <= values["step"] < data["n"]:
            raise InvalidSelection(f"step must lie in 0..{data['n'] - 1}")
        if not hasattr(self, "_curve"):
            self._setup()
        data = {**data, **data["steps"][values["step"]], "step": values["step"]}
        ax_p, ax_i, _ = self.fig.axes
        kind, js, jt, h = data["kind"], data["js"], data["jt"], data["h"]
        lam = self._lams
        pred = viz.to_numpy(self._pred[kind][:, 0])
        lam0 = data["anchors"][0][0]
        lo = min(a[0] for a in data["anchors"])
        self._curve.set_data(lam, pred)
        self._span.set_x(lam[js])
        self._span.set_width(lam[jt] - lam[js])
        u = np.linspace(lo, lam[jt], 80)
        d = [viz.to_numpy(dm)[0] for dm in data["taylor"]]
        self._poly.set_data(u, sum(dm * (u - lam0) ** m / math.factorial(m) for m, dm in enumerate(d)))
        self._anch.set_data([a[0] for a in data["anchors"]], [viz.to_numpy(a[1])[0] for a in data["anchors"]])
        span = pred.max() - pred.min()
        ax_p.set_ylim(pred.min() - 0.2 * span, pred.max() + 0.2 * span)
        self._p_title.set_text(f"{kind} (first coordinate): {data['k']} anchor(s), degree {data['k'] - 1}")
        seg = slice(js, jt + 1)
        uu = lam[seg] - lam[js]
        kern = np.exp(h - uu) if kind == "eps" else np.exp(-(h - uu))
        true_int = kern * pred[seg]
        poly_int = kern * sum(dm * (lam[seg] - lam0) ** m / math.factorial(m) for m, dm in enumerate(d))
        scale = max(np.abs(true_int).max(), 1e-12)
        self._int_true.set_data(uu / h, true_int / scale)
        self._int_poly.set_data(uu / h, poly_int / scale)
        if self._fill is not None:
            self._fill.remove()
        self._fill = self.animated(ax_i.fill_between(uu / h, true_int / scale, poly_int / scale, color="C3",
                                                     alpha=0.25))
        kern_txt = "e^(h-u)" if kind == "eps" else "e^-(h-u)"
        self._i_title.set_text(f"int {kern_txt} {kind} du: exact {viz.to_numpy(data['integral_exact'])[0]:.4f}, "
                               f"polynomial {viz.to_numpy(data['integral_poly'])[0]:.4f}")
        errs = np.maximum(data["local_errors"], 1e-16)
        self._bars.set_data(np.arange(len(errs)), errs)
        self._chosen.set_data([data["step"]], [errs[data["step"]]])
        self._title.set_text(f"{data['form']}, order {data['order']}: step {data['step']} of {data['n']}, "
                             f"h = {h:.2f}, local error {data['local_error']:.2e}")


# -- the eta slider: DDIM (eta = 0) to DDPM (eta = 1) --------------------------------------------------------
ETA_VALUES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
ETA_NFES = (5, 10, 20, 50)


class EtaExplorer(Explorer):
    """DDIM with stochasticity eta (§9.2.3) on the exact mixture field, VP schedule, uniform-t grid.

    The step is samplers.ddim_step:  x_t = alpha_t x0_hat + sqrt(sigma_t^2 - c^2) eps_hat + c z,
    c = eta * (posterior std of x_t given x_s, x0), so eta = 0 is deterministic DDIM and eta = 1 the
    ancestral DDPM step.  Every (eta, NFE) run starts from the same n draws x_T ~ p_1 (exactly: alpha_1 x0 +
    sigma_1 z) and uses the same sampler noise (one generator, re-seeded per run), so a change of eta changes
    the sampler, not the luck of the draw.

    Left: the first n_paths paths (grid nodes as dots) over the exact PF-ODE paths of the same x_T (grey) and
    the data density.  Middle: the n final samples at t_min beside n exact samples of p_{t_min}.  Right: against
    eta at the chosen NFE, W2 of the final samples to the exact samples (exact assignment) with the floor band
    (W2 between two exact draws of the same size: mean +- std over `floor_pairs` pairs), and the RMS distance of
    each final sample to the exact PF-ODE end point of its own x_T (how far eta moves a sample away from the
    deterministic flow map).  Controls: eta (ETA_VALUES), nfe (ETA_NFES); they do not constrain each other.
    Everything is computed in the constructor (a few seconds), so a change of a control only redraws.
    `update()` returns 'nfe', 'etas', 'w2' (len(etas),), 'dist_to_ode' (len(etas),), 'finals' {eta: (n, 2)},
    'paths' {eta: (nfe+1, n_paths, 2)}, 'exact' (n, 2), 'ode_end' (n, 2), 'floor' (mean, std), 'eta'.
    """

    compute_keys = ("nfe",)
    clear_axes = False
    figsize = (11.0, 3.9)
    axes_grid = (1, 3)
    margins = {"left": 0.05, "right": 0.99, "bottom": 0.13, "top": 0.82, "wspace": 0.25}

    def __init__(self, mixture: GaussianMixture | None = None, *, n: int = 300, n_paths: int = 8, seed: int = 0,
                 floor_pairs: int = 5, **initial: Any) -> None:
        self.mixture, self.schedule = mixture or lab_mixture(), VPLinear()
        self.model = self.mixture.model(self.schedule)
        self.n, self.n_paths, self.seed = n, min(n_paths, n), seed
        sch = self.schedule
        g = torch.Generator().manual_seed(seed)
        c1 = coeffs(sch, 1.0)
        self.x_T = c1.alpha * self.mixture.sample(n, generator=g, dtype=torch.float64) + c1.sigma * randn(
            (n, 2), generator=g, dtype=torch.float64)
        self.exact = self.mixture.sample_marginal(n, sch.t_eps, sch, generator=g, dtype=torch.float64)
        draw = lambda m, generator: self.mixture.sample_marginal(m, sch.t_eps, sch, generator=generator,  # noqa: E731
                                                                  dtype=torch.float64)
        self.floor = metrics.floor(metrics.w2_exact, draw, n, repeats=floor_pairs, generator=g, return_std=True)
        times = torch.linspace(1.0, sch.t_eps, 61, dtype=torch.float64)
        self.exact_paths = self.mixture.flow(self.x_T[:self.n_paths], times, sch, rtol=1e-9, atol=1e-9)
        self.ode_end = self.mixture.flow_map(self.x_T, 1.0, sch.t_eps, sch, rtol=1e-9, atol=1e-9)
        self._table = {nfe: self._run(nfe) for nfe in ETA_NFES}
        self._lim = 3.0
        _, _, dense_pts = viz.grid_points(self._lim, 60)
        self._density = torch.exp(self.mixture.log_prob(dense_pts)).reshape(60, 60).numpy()
        super().__init__(**initial)

    def sampler_noise(self, eta: float, nfe: int) -> torch.Generator:
        """The generator of the run (eta, nfe): the same seed for every eta, so the runs share their noise."""
        return torch.Generator().manual_seed(1000 * self.seed + nfe)

    def _run(self, nfe: int) -> dict[str, Any]:
        grid = time_grid(self.schedule, nfe, "uniform")
        finals, paths, w2, dist = {}, {}, [], []
        for eta in ETA_VALUES:
            traj = samplers.trajectory(self.model, self.x_T, grid, "ddim", eta=eta,
                                       generator=self.sampler_noise(eta, nfe))
            finals[eta], paths[eta] = traj[-1], traj[:, :self.n_paths]
            w2.append(metrics.w2_exact(traj[-1], self.exact))
            dist.append(_rmse(traj[-1], self.ode_end))
        return {"nfe": nfe, "etas": ETA_VALUES, "w2": np.array(w2), "dist_to_ode": np.array(dist),
                "finals": finals, "paths": paths, "exact": self.exact, "ode_end": self.ode_end, "floor": self.floor}

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"eta": W.SelectionSlider(options=list(ETA_VALUES), value=0.0, description="eta",
                                         continuous_update=False),
                "nfe": W.SelectionSlider(options=list(ETA_NFES), value=10, description="NFE", continuous_update=False)}

    def compute(self, nfe: int) -> dict[str, Any]:
        if nfe not in self._table:
            raise InvalidSelection(f"choose the NFE among {ETA_NFES}")
        return self._table[nfe]

    def _setup(self) -> None:
        ax_path, ax_end, ax_w = self.fig.axes
        nan = [np.nan]
        for ax in (ax_path, ax_end):
            _density_backdrop(ax, self._density, self._lim)
        exact_lines = LineCollection(list(np.transpose(viz.to_numpy(self.exact_paths), (1, 0, 2))), colors="0.2",
                                     linewidths=2.2, alpha=0.5, label="exact PF-ODE paths")
        ax_path.add_collection(exact_lines)
        self._lines = self.animated(LineCollection([], colors="C3", linewidths=0.9, label="sampler paths"))
        ax_path.add_collection(self._lines)
        self._nodes = self.animated(ax_path.scatter(nan, nan, s=3, color="C3", zorder=3))
        ax_path.legend(fontsize=7, loc="upper right")
        self._path_title = self.animated(ax_path.set_title(" ", fontsize=9))
        ax_end.scatter(*viz.to_numpy(self.exact).T, s=10, color="k", marker="x", lw=0.7, label="exact samples")
        self._fin = self.animated(ax_end.scatter(nan, nan, s=9, color="C3", alpha=0.75, label="sampler"))
        ax_end.legend(fontsize=7, loc="upper right")
        ax_end.set_title(f"final samples at t_min (n = {self.n})", fontsize=9)
        fm, fs = self.floor
        ax_w.axhspan(fm - fs, fm + fs, color="0.85", label="floor (two exact draws), +- std")
        ax_w.axhline(fm, color="0.5", lw=0.8)
        self._w2_line = self.animated(ax_w.plot(nan, nan, "o-", color="C0", ms=4, label="W2 to exact samples")[0])
        self._dist_line = self.animated(ax_w.plot(nan, nan, "s--", color="C2", ms=4,
                                                  label="RMS distance to own ODE end point")[0])
        self._mark = self.animated(ax_w.plot(nan, nan, "o", ms=11, mfc="none", mec="C3", mew=1.5,
                                             label="chosen eta")[0])
        ax_w.set_xlim(-0.05, 1.05)
        ax_w.set_ylim(0, 2.4)
        ax_w.set_xlabel("eta (0 = DDIM, 1 = DDPM)", fontsize=8)
        ax_w.set_ylabel("distance (data units)", fontsize=8)
        ax_w.legend(fontsize=7, loc="upper left")
        self._w_title = self.animated(ax_w.set_title(" ", fontsize=9))
        for ax in self.fig.axes:
            ax.tick_params(labelsize=7)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_lines"):
            self._setup()
        eta, nfe = values["eta"], data["nfe"]
        if eta not in data["finals"]:
            raise InvalidSelection(f"choose eta among {ETA_VALUES}")
        p = viz.to_numpy(data["paths"][eta])
        self._lines.set_segments(list(np.transpose(p, (1, 0, 2))))
        self._nodes.set_offsets(p.reshape(-1, 2))
        self._nodes.set_sizes([3.0 if nfe <= 20 else 0.8])          # dense nodes would hide the exact paths
        self._fin.set_offsets(viz.to_numpy(data["finals"][eta]))
        i = ETA_VALUES.index(eta)
        self._w2_line.set_data(ETA_VALUES, data["w2"])
        self._dist_line.set_data(ETA_VALUES, data["dist_to_ode"])
        self._mark.set_data([eta], [data["w2"][i]])
        kind = "deterministic DDIM" if eta == 0 else "ancestral DDPM" if eta == 1 else "DDIM with noise"
        self._path_title.set_text(f"{self.n_paths} paths from the same x_T: {kind}")
        self._w_title.set_text(f"against eta at NFE {nfe}")
        fm, fs = data["floor"]
        self._title.set_text(f"eta = {eta:g}, NFE {nfe} (uniform t, VP, exact field): W2 to exact samples "
                             f"{data['w2'][i]:.3f} (floor {fm:.3f} +- {fs:.3f}); distance to own ODE end point "
                             f"{data['dist_to_ode'][i]:.3f}")
