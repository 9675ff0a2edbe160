"""Noise schedules (alpha_t, sigma_t) with closed-form derivatives, log-SNR and SDE coefficients.

Convention (book §1, §4.5): t in [0, 1], t = 0 is data and t = 1 is noise, and
x_t = alpha_t x0 + sigma_t eps.  From (alpha_t, sigma_t) the lemma of §4.5.2 gives the
forward SDE dx = f(t) x dt + g(t) dw with

    f(t)   = d/dt log alpha_t,
    g^2(t) = d/dt sigma_t^2 - 2 f(t) sigma_t^2 = -2 sigma_t^2 d/dt lambda_t,

where lambda_t = log(alpha_t / sigma_t) is the book's (half) log-SNR.

Every schedule implements alpha, sigma, d_alpha and d_sigma2 = d(sigma^2)/dt in closed
form; the rest is derived here once.  Quantities that are infinite at an end point
(d_sigma at sigma = 0, f at alpha = 0) raise a ValueError there instead of returning inf/NaN;
lambda is +inf where sigma = 0 and -inf where alpha = 0 (the extended-real limit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .utils import Time, as_time, check_choice, check_finite, randn

__all__ = ["Coeffs", "Schedule", "VPLinear", "Cosine", "VEGeometric", "EDM", "RectifiedFlow", "Trig",
           "DiscreteSchedule", "get_schedule", "SCHEDULES", "time_map", "flow_time", "trig_time", "kinetic_energy"]


@dataclass(frozen=True)
class Coeffs:
    """Every coefficient of a schedule at t, from one validated call (`Schedule.coeffs`).

    Tensors of t's shape (float64 when t is a Python float).  At an end point a quantity that
    diverges holds its extended-real limit instead of raising: lam = +inf where sigma = 0 and
    -inf where alpha = 0, d_sigma = +inf where sigma = 0 < (sigma^2)', f = -inf and g2 = +inf
    where alpha = 0, d_lam = -inf where sigma = 0.
    """

    t: torch.Tensor
    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma2: torch.Tensor
    d_sigma: torch.Tensor
    lam: torch.Tensor
    d_lam: torch.Tensor
    f: torch.Tensor
    g2: torch.Tensor

    def floats(self) -> Coeffs:
        """The same coefficients as Python floats (t must be a scalar): what sampler steps read."""
        if self.t.dim() != 0:
            raise ValueError(f"floats() needs a scalar t, got shape {tuple(self.t.shape)}")
        return Coeffs(**{k: float(v) for k, v in self.__dict__.items()})


def _safe_div(num: torch.Tensor, den: torch.Tensor, where_zero: float) -> torch.Tensor:
    """num / den where den > 0, else the given limit (no NaN from 0/0)."""
    out = num / torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, out, torch.full_like(out, where_zero))


class Schedule:
    """Base class: subclasses define _alpha, _sigma, _d_alpha, _d_sigma2 on a float tensor t."""

    name = "schedule"
    t_eps = 1e-3            # default smallest time for samplers and grids

    # -- closed forms supplied by subclasses ----------------------------------------------
    def _alpha(self, t): raise NotImplementedError
    def _sigma(self, t): raise NotImplementedError
    def _d_alpha(self, t): raise NotImplementedError
    def _d_sigma2(self, t): raise NotImplementedError

    # -- public API ------------------------------------------------------------------------
    def alpha(self, t: Time) -> torch.Tensor:
        """alpha_t, the data coefficient of the forward kernel (§4.5.1)."""
        return self._alpha(as_time(t))

    def sigma(self, t: Time) -> torch.Tensor:
        """sigma_t, the noise standard deviation of the forward kernel (§4.5.1)."""
        return self._sigma(as_time(t))

    def d_alpha(self, t: Time) -> torch.Tensor:
        """d alpha_t / dt in closed form."""
        return self._d_alpha(as_time(t))

    def d_sigma2(self, t: Time) -> torch.Tensor:
        """d sigma_t^2 / dt in closed form (finite even where d sigma_t / dt is not)."""
        return self._d_sigma2(as_time(t))

    def d_sigma(self, t: Time) -> torch.Tensor:
        """d sigma_t / dt = (d sigma_t^2 / dt) / (2 sigma_t); infinite where sigma_t = 0 < d sigma^2/dt.

        Schedules whose sigma_t is linear near 0 (EDM, flow, trig) give it in closed form instead.
        """
        t = as_time(t)
        if hasattr(self, "_d_sigma"):
            return self._d_sigma(t)
        sig, ds2 = self._sigma(t), self._d_sigma2(t)
        safe = torch.where(sig > 0, sig, torch.ones_like(sig))
        at_zero = torch.where(ds2 == 0, torch.zeros_like(ds2), torch.full_like(ds2, math.inf))
        out = torch.where(sig > 0, ds2 / (2 * safe), at_zero)
        return check_finite(out, t, f"{self.name}.d_sigma", "sigma_t = 0 there and sigma_t grows like sqrt(t)")

    def coeffs(self, t: Time) -> Coeffs:
        """alpha, sigma, their derivatives, lambda, lambda', f and g^2 at t from one validated call.

        f = alpha'/alpha and g^2 = (sigma^2)' - 2 f sigma^2 (lemma of §4.5.2),
        lambda = log(alpha/sigma) and lambda' = f - (sigma^2)'/(2 sigma^2) (§9.4.1).
        End points give extended-real limits (see `Coeffs`) instead of raising.
        """
        t = as_time(t)
        a, sig, da, ds2 = self._alpha(t), self._sigma(t), self._d_alpha(t), self._d_sigma2(t)
        if hasattr(self, "_d_sigma"):
            d_sig = self._d_sigma(t)
        else:
            d_sig = torch.where((sig == 0) & (ds2 == 0), torch.zeros_like(ds2), _safe_div(ds2, 2 * sig, math.inf))
        f = _safe_div(da, a, -math.inf)
        g2 = torch.where(a > 0, ds2 - 2 * torch.where(a > 0, f, torch.zeros_like(f)) * sig ** 2,
                         torch.full_like(a, math.inf))
        d_lam = torch.where(sig > 0, torch.where(a > 0, f, torch.zeros_like(f)) - _safe_div(ds2, 2 * sig ** 2, 0.0),
                            torch.full_like(a, -math.inf))
        d_lam = torch.where(a > 0, d_lam, torch.full_like(a, -math.inf))
        return Coeffs(t, a, sig, da, ds2, d_sig, torch.log(a) - torch.log(sig), d_lam, f, g2)

    def lam(self, t: Time) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t): +inf where sigma_t = 0, -inf where alpha_t = 0 (§9.4.1)."""
        t = as_time(t)
        return torch.log(self._alpha(t)) - torch.log(self._sigma(t))

    def d_lam(self, t: Time) -> torch.Tensor:
        """d lambda_t / dt = alpha'/alpha - (sigma^2)'/(2 sigma^2) (< 0; -inf where sigma_t = 0 < (sigma^2)')."""
        t = as_time(t)
        sig2 = self._sigma(t) ** 2
        out = self.f(t) - self._d_sigma2(t) / (2 * torch.where(sig2 > 0, sig2, torch.ones_like(sig2)))
        return check_finite(torch.where(sig2 > 0, out, torch.full_like(out, -math.inf)), t,
                            f"{self.name}.d_lam", "sigma_t = 0 there")

    def snr(self, t: Time) -> torch.Tensor:
        """Signal-to-noise ratio alpha_t^2 / sigma_t^2 = exp(2 lambda_t)."""
        return torch.exp(2 * self.lam(t))

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        """The time t with lambda_t = lam (lambda is strictly decreasing); bisection in float64.

        Subclasses with a closed form override this.
        """
        lam = torch.as_tensor(lam, dtype=torch.float64)
        if torch.isnan(lam).any():
            raise ValueError("lam contains NaN")
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(80):  # 2^-80: below float64 resolution on [0, 1]
            mid = 0.5 * (lo + hi)
            go_right = self.lam(mid) > lam  # lambda decreasing: still too clean, move right
            lo = torch.where(go_right, mid, lo)
            hi = torch.where(go_right, hi, mid)
        return 0.5 * (lo + hi)

    def f(self, t: Time) -> torch.Tensor:
        """Drift coefficient f(t) = alpha_t' / alpha_t of the forward SDE (lemma of §4.5.2)."""
        t = as_time(t)
        a, da = self._alpha(t), self._d_alpha(t)
        out = da / torch.where(a > 0, a, torch.ones_like(a))
        out = torch.where(a > 0, out, torch.full_like(out, -math.inf))
        return check_finite(out, t, f"{self.name}.f", "alpha_t = 0 there")

    def g2(self, t: Time) -> torch.Tensor:
        """Diffusion coefficient g^2(t) = (sigma_t^2)' - 2 f(t) sigma_t^2 (lemma of §4.5.2)."""
        t = as_time(t)
        return self._d_sigma2(t) - 2 * self.f(t) * self._sigma(t) ** 2

    def kernel(self, s: Time, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward kernel from s to t >= s: p(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I) (§4.5.3).

        alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2.
        Returns (alpha_{t|s}, sigma_{t|s}).  Like every time pair in the package it reads "from s
        to t"; here the step runs forward in time (towards noise), so s <= t.
        """
        s, t = as_time(s, name="s"), as_time(t, name="t")
        if (s > t).any():
            raise ValueError("kernel(s, t) runs forward, from s to a noisier t: it needs s <= t")
        a_s = self._alpha(s)
        if (a_s == 0).any():
            raise ValueError(f"{self.name}.kernel: alpha_s = 0 at the start time s; no kernel from it")
        a_ts = self._alpha(t) / a_s
        var = (self._sigma(t) ** 2 - a_ts ** 2 * self._sigma(s) ** 2).clamp_min(0)
        return a_ts, var.sqrt()

    def posterior(self, s: Time, t: Time) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reverse step from s to a cleaner t < s: p(x_t | x_s, x0) = N(c_s x_s + c_0 x0, std^2 I) (lemma, §4.5.3).

        With (alpha_{s|t}, sigma_{s|t}) = kernel(t, s), the forward kernel from t to s:
        c_s = alpha_{s|t} sigma_t^2 / sigma_s^2, c_0 = alpha_t sigma_{s|t}^2 / sigma_s^2,
        std = sigma_{s|t} sigma_t / sigma_s.  Returns (c_s, c_0, std).
        """
        s, t = as_time(s, name="s"), as_time(t, name="t")
        if (t > s).any():
            raise ValueError("posterior(s, t) runs backward, from s to a cleaner t: it needs t <= s")
        a_st, sig_st = self.kernel(t, s)
        sig_s = self._sigma(s)
        if (sig_s == 0).any():
            raise ValueError(f"{self.name}.posterior needs sigma_s > 0 at the noisier time s")
        sig_t = self._sigma(t)
        return (a_st * sig_t ** 2 / sig_s ** 2, self._alpha(t) * sig_st ** 2 / sig_s ** 2,
                sig_st * sig_t / sig_s)

    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior N(0, sigma_1^2 I) used to start samplers."""
        return float(self._sigma(torch.tensor(1.0, dtype=torch.float64)))

    def sample_prior(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw x_1 ~ N(0, sigma_1^2 I) (alpha_1 x0 is neglected where alpha_1 is small).

        Drawn on the generator's device (utils.randn), then moved to `device`.
        """
        return randn(shape, generator=generator, dtype=dtype, device=device) * self.prior_std()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({fields})"

    def config(self) -> dict:
        """A JSON-friendly description; get_schedule(**config) rebuilds the schedule."""
        return {"name": self.name}


class VPLinear(Schedule):
    """Variance-preserving schedule with linear beta(t) = beta_min + t (beta_max - beta_min) (§4.4.2).

    alpha_t = exp(-B(t)/2), sigma_t = sqrt(1 - exp(-B(t))), B(t) = int_0^t beta.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 < beta_min <= beta_max):
            raise ValueError(f"VPLinear needs 0 < beta_min <= beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: Time) -> torch.Tensor:
        return self.beta_min + as_time(t) * (self.beta_max - self.beta_min)

    def _B(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def _alpha(self, t): return torch.exp(-0.5 * self._B(t))
    def _sigma(self, t): return torch.sqrt(-torch.expm1(-self._B(t)))
    def _d_alpha(self, t): return -0.5 * self.beta(t) * self._alpha(t)
    def _d_sigma2(self, t): return self.beta(t) * torch.exp(-self._B(t))

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        # exp(-B) = alpha^2 = sigmoid(2 lam); solve B(t) = softplus(-2 lam) for t (quadratic).
        lam = torch.as_tensor(lam, dtype=torch.float64)
        B = torch.nn.functional.softplus(-2 * lam)
        a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
        t = 2 * B / (b + torch.sqrt(b * b + 4 * a * B))  # stable root of a t^2 + b t - B = 0
        return t

    def config(self) -> dict: return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max}


class Cosine(Schedule):
    """Cosine schedule of Nichol & Dhariwal: alpha_t = cos((t+s)/(1+s) pi/2) / cos(s/(1+s) pi/2).

    Variance preserving: sigma_t = sqrt(1 - alpha_t^2); alpha_1 = 0 exactly.
    """

    name = "cosine"

    def __init__(self, offset: float = 0.008):
        if not 0 <= offset < 1:
            raise ValueError(f"Cosine needs 0 <= offset < 1, got {offset}")
        self.offset = float(offset)
        self._c = math.cos(self.offset / (1 + self.offset) * math.pi / 2)

    def _phase(self, t): return (t + self.offset) / (1 + self.offset) * math.pi / 2
    def _alpha(self, t):  # exactly 0 at t = 1 (cos(pi/2) is 6e-17 in floating point)
        return torch.where(t >= 1, torch.zeros_like(t), (torch.cos(self._phase(t)) / self._c).clamp(0.0, 1.0))
    def _sigma(self, t): return torch.sqrt((1 - self._alpha(t) ** 2).clamp_min(0))

    def _d_alpha(self, t):
        return -torch.sin(self._phase(t)) / self._c * math.pi / (2 * (1 + self.offset))

    def _d_sigma2(self, t): return -2 * self._alpha(t) * self._d_alpha(t)

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        alpha = torch.sqrt(torch.sigmoid(2 * lam))
        phase = torch.acos((alpha * self._c).clamp(-1, 1))
        return (phase * 2 / math.pi * (1 + self.offset) - self.offset).clamp(0, 1)

    def config(self) -> dict: return {"name": self.name, "offset": self.offset}


class VEGeometric(Schedule):
    """Variance-exploding schedule with a geometric noise ladder (§4.4.1, NCSN).

    alpha_t = 1, sigma_t^2 = sigma_min^2 ((sigma_max/sigma_min)^(2t) - 1), so that
    sigma_0 = 0 and the kernel variance is sigma(t)^2 - sigma(0)^2 with sigma(t) geometric.
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"VEGeometric needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_r = math.log(sigma_max / sigma_min)

    def _alpha(self, t): return torch.ones_like(t)
    def _sigma(self, t): return self.sigma_min * torch.sqrt(torch.expm1(2 * self._log_r * t))
    def _d_alpha(self, t): return torch.zeros_like(t)
    def _d_sigma2(self, t): return 2 * self._log_r * self.sigma_min ** 2 * torch.exp(2 * self._log_r * t)

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        # sigma = exp(-lam)  =>  t = log1p(sigma^2 / sigma_min^2) / (2 log r)
        return (torch.log1p(torch.exp(-2 * lam) / self.sigma_min ** 2) / (2 * self._log_r)).clamp(0, 1)

    def config(self) -> dict: return {"name": self.name, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class EDM(Schedule):
    """EDM / Karras et al.: alpha_t = 1, sigma_t = sigma_max * t (book: sigma = t on [0, T], T = sigma_max)."""

    name = "edm"

    def __init__(self, sigma_max: float = 80.0):
        if not sigma_max > 0:
            raise ValueError(f"EDM needs sigma_max > 0, got {sigma_max}")
        self.sigma_max = float(sigma_max)

    def _alpha(self, t): return torch.ones_like(t)
    def _sigma(self, t): return self.sigma_max * t
    def _d_alpha(self, t): return torch.zeros_like(t)
    def _d_sigma2(self, t): return 2 * self.sigma_max ** 2 * t
    def _d_sigma(self, t): return torch.full_like(t, self.sigma_max)

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return (torch.exp(-lam) / self.sigma_max).clamp(0, 1)

    def config(self) -> dict: return {"name": self.name, "sigma_max": self.sigma_max}


class RectifiedFlow(Schedule):
    """Linear / rectified-flow path alpha_t = 1 - t, sigma_t = t (§5.4, data at t = 0)."""

    name = "flow"

    def _alpha(self, t): return 1 - t
    def _sigma(self, t): return t.clone()
    def _d_alpha(self, t): return -torch.ones_like(t)
    def _d_sigma2(self, t): return 2 * t
    def _d_sigma(self, t): return torch.ones_like(t)

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-torch.as_tensor(lam, dtype=torch.float64))


class Trig(Schedule):
    """Trigonometric (TrigFlow) path alpha_t = cos(pi t / 2), sigma_t = sigma_d sin(pi t / 2) (§11.3.3)."""

    name = "trig"

    def __init__(self, sigma_d: float = 1.0):
        if not sigma_d > 0:
            raise ValueError(f"Trig needs sigma_d > 0, got {sigma_d}")
        self.sigma_d = float(sigma_d)

    def _alpha(self, t):  # exactly 0 at t = 1
        return torch.where(t >= 1, torch.zeros_like(t), torch.cos(math.pi / 2 * t).clamp_min(0))
    def _sigma(self, t): return self.sigma_d * torch.sin(math.pi / 2 * t)
    def _d_alpha(self, t): return -math.pi / 2 * torch.sin(math.pi / 2 * t)

    def _d_sigma2(self, t):
        return self.sigma_d ** 2 * math.pi / 2 * torch.sin(math.pi * t)

    def _d_sigma(self, t): return self.sigma_d * math.pi / 2 * torch.cos(math.pi / 2 * t)

    def inv_lam(self, lam: float | torch.Tensor) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return torch.atan(torch.exp(-lam) / self.sigma_d) * 2 / math.pi

    def config(self) -> dict: return {"name": self.name, "sigma_d": self.sigma_d}


class DiscreteSchedule(Schedule):
    """Discrete DDPM chain from a beta sequence, placed on t_i = i / L (§2.2.1).

    beta_is="std" (the book's convention, Eq. 2.2.1): x_i = sqrt(1 - beta_i^2) x_{i-1} + beta_i eps.
    beta_is="variance" (Ho et al.): x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) eps.
    Either way the book's bar-alpha_i = prod_k alpha_k is the signal SCALE alpha_{t_i}
    (`alpha_at_steps`), and sigma_i = sqrt(1 - bar-alpha_i^2).  Ho et al.'s and diffusers'
    bar-alpha (`alphas_cumprod`) is its square, and their alpha_i = 1 - beta_i (variance
    convention) is the square of `step_alphas`.
    Between the knots log alpha_t is linear in t, so f(t) is piecewise constant and the
    schedule is a variance-preserving continuous schedule that passes through the chain.
    """

    name = "discrete"

    def __init__(self, betas, beta_is: str = "std"):
        check_choice(beta_is, ("std", "variance"), "beta_is")
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise ValueError("betas must contain at least one value")
        if torch.isnan(betas).any() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("betas must lie in (0, 1)")
        self.betas, self.beta_is = betas, beta_is
        var = betas ** 2 if beta_is == "std" else betas
        self.step_alphas = torch.sqrt(1 - var)                  # alpha_i of one step: x_i = alpha_i x_{i-1} + ...
        log_a = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log(self.step_alphas), 0)])
        self._log_alpha_knots = log_a                            # log alpha_bar_i, i = 0..L
        self.L = betas.numel()

    @classmethod
    def linear(cls, L: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
        """Ho et al.'s linear schedule of variances (beta_is='variance')."""
        return cls(torch.linspace(beta_start, beta_end, L, dtype=torch.float64), beta_is="variance")

    @property
    def alpha_at_steps(self) -> torch.Tensor:
        """alpha_{t_i} for i = 0..L (1 at i = 0): the book's bar-alpha_i = prod_k alpha_k, a scale, not a variance."""
        return torch.exp(self._log_alpha_knots)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """(L,) Ho et al.'s / diffusers' `alphas_cumprod` for steps 1..L: alpha_{t_i}^2, the signal VARIANCE."""
        return torch.exp(2 * self._log_alpha_knots[1:])

    def time(self, i: int | torch.Tensor) -> torch.Tensor:
        """The continuous time t_i = i / L of step index i."""
        i = torch.as_tensor(i, dtype=torch.float64)
        if (i < 0).any() or (i > self.L).any():
            raise ValueError(f"step index i must lie in 0..{self.L}")
        return i / self.L

    def _segment(self, t):
        u = t * self.L
        k = torch.clamp(torch.ceil(u) - 1, 0, self.L - 1).long()  # segment (k/L, (k+1)/L]
        return u, k

    def _log_alpha(self, t):
        u, k = self._segment(t)
        lo, hi = self._log_alpha_knots[k], self._log_alpha_knots[k + 1]
        return lo + (u - k) * (hi - lo)

    def _slope(self, t):  # d log alpha / dt on the segment containing t
        _, k = self._segment(t)
        return (self._log_alpha_knots[k + 1] - self._log_alpha_knots[k]) * self.L

    def _alpha(self, t): return torch.exp(self._log_alpha(t))
    def _sigma(self, t): return torch.sqrt(-torch.expm1(2 * self._log_alpha(t)))
    def _d_alpha(self, t): return self._slope(t) * self._alpha(t)
    def _d_sigma2(self, t): return -2 * self._slope(t) * self._alpha(t) ** 2

    def config(self) -> dict:
        return {"name": self.name, "betas": self.betas.tolist(), "beta_is": self.beta_is}


SCHEDULES = {"vp": VPLinear, "cosine": Cosine, "ve": VEGeometric, "edm": EDM, "flow": RectifiedFlow,
             "trig": Trig, "discrete": DiscreteSchedule}


def get_schedule(name: str | Schedule = "vp", **kwargs) -> Schedule:
    """Build a schedule by name: 'vp', 'cosine', 've', 'edm', 'flow' (rectified flow), 'trig', 'discrete'."""
    if isinstance(name, Schedule):
        return name
    if not isinstance(name, str):
        raise TypeError(f"schedule must be a name or a Schedule, got {type(name).__name__}")
    check_choice(name, SCHEDULES, "schedule")
    return SCHEDULES[name](**kwargs)


# -- §6.3.3-§6.3.4: every affine path is one path in another clock and scale -----------------------------
def time_map(src: Schedule, dst: Schedule, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
    """The time tau and scale k with x^dst_tau = k x^src_t for the same (x0, eps) (§6.3.3).

    Two affine paths with the same log-SNR lambda differ only by a common factor: tau solves
    lambda^dst_tau = lambda^src_t, and k = alpha^dst_tau / alpha^src_t = sigma^dst_tau / sigma^src_t,
    computed as (alpha^dst + sigma^dst) / (alpha^src + sigma^src) so that it holds at either end.
    Args: t a float, 0-d or (B,) tensor in [0, 1].  Returns (tau, k), tensors shaped like t (float64).
    A ValueError where lambda^src_t lies outside dst's range of lambda (dst has no such time).
    """
    if not isinstance(src, Schedule) or not isinstance(dst, Schedule):
        raise TypeError("time_map(src, dst, t) needs two Schedule objects, got "
                        f"{type(src).__name__} and {type(dst).__name__}")
    t = as_time(t)
    lam = src.lam(t)
    lo, hi = dst.lam(torch.tensor(1.0, dtype=torch.float64)), dst.lam(torch.tensor(0.0, dtype=torch.float64))
    outside = (lam < lo - 1e-9) | (lam > hi + 1e-9)
    if outside.any():
        bad = t.expand_as(lam)[outside].flatten()[0].item()
        raise ValueError(f"time_map: lambda of {src.name} at t = {bad:g} is {float(lam[outside].flatten()[0]):.4g}, "
                         f"outside the range [{float(lo):.4g}, {float(hi):.4g}] of {dst.name}; no time of "
                         f"{dst.name} has that signal-to-noise ratio")
    tau = dst.inv_lam(lam).clamp(0, 1)
    k = (dst.alpha(tau) + dst.sigma(tau)) / (src.alpha(t) + src.sigma(t))
    return tau, k


def flow_time(schedule: Schedule, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's map to flow-matching time (§6.3.3): x_t = c(t) x^FM_tau(t), x^FM_tau = (1 - tau) x0 + tau eps.

    c = alpha_t + sigma_t and tau = sigma_t / (alpha_t + sigma_t).  (time_map(schedule, RectifiedFlow(), t)
    gives the same tau with k = 1 / c, the map read the other way.)  Returns (c, tau) shaped like t.
    """
    t = as_time(t)
    a, s = schedule.alpha(t), schedule.sigma(t)
    c = a + s
    if (c <= 0).any():
        raise ValueError(f"flow_time: alpha_t + sigma_t = 0 for {schedule.name}; the path carries nothing there")
    return c, s / c


def trig_time(schedule: Schedule, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
    """The map to the trigonometric path (§6.3.3): x_t = R_t x^Trig_u, x^Trig_u = cos(u) x0 + sin(u) eps.

    R_t = sqrt(alpha_t^2 + sigma_t^2) and the angle u_t in [0, pi/2] with cos u_t = alpha_t / R_t.
    (The package's Trig schedule with sigma_d = 1 runs the angle as u = pi t / 2.)  Returns (R, u) shaped like t.
    """
    t = as_time(t)
    a, s = schedule.alpha(t), schedule.sigma(t)
    R = torch.sqrt(a ** 2 + s ** 2)
    if (R <= 0).any():
        raise ValueError(f"trig_time: alpha_t = sigma_t = 0 for {schedule.name}; the path carries nothing there")
    return R, torch.atan2(s, a)


def kinetic_energy(schedule: Schedule, second_moment: float, dim: int, *, t_min: float = 0.0, t_max: float = 1.0,
                   n: int = 64) -> float:
    """Kinetic energy of the conditional path, K = int E||alpha_t' x0 + sigma_t' eps||^2 dt (§6.3.4).

    With eps independent of x0 and zero-mean, E||alpha' x0 + sigma' eps||^2 = alpha'^2 E||x0||^2 + sigma'^2 D,
    so for the paths x_t = (1 - rho) x0 + rho eps, K = (D + E||x0||^2) int rho'^2 dt, with
    E||x0||^2 = Tr Cov x0 + ||E x0||^2; rho(t) = t minimises int rho'^2 under rho(0) = 0, rho(1) = 1.
    Gauss-Legendre with n nodes on [t_min, t_max].

    Args: second_moment E||x0||^2 >= 0; dim the data dimension D >= 1.  Returns a float.
    A ValueError where the integral diverges (sigma_t' is infinite at t_min, as at the start of VP and VE).
    """
    if not second_moment >= 0:
        raise ValueError(f"second_moment must be E||x0||^2 >= 0, got {second_moment}")
    if not (isinstance(dim, int) and dim >= 1):
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n must be an integer >= 2 (quadrature nodes), got {n!r}")
    lo, hi = (float(as_time(v, name=k)) for v, k in ((t_min, "t_min"), (t_max, "t_max")))
    if not lo < hi:
        raise ValueError(f"need t_min < t_max, got {lo}, {hi}")
    end = schedule.coeffs(torch.tensor([lo, hi], dtype=torch.float64))
    if not (torch.isfinite(end.d_sigma).all() and torch.isfinite(end.d_alpha).all()):
        raise ValueError(f"kinetic_energy: sigma_t' of {schedule.name} is infinite at an end of "
                         f"[{lo:g}, {hi:g}] (sigma_t grows like sqrt(t)); the energy diverges there, "
                         "so pass t_min > 0")
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(n)
    ts = torch.as_tensor(0.5 * (hi - lo) * nodes + 0.5 * (hi + lo), dtype=torch.float64)
    c = schedule.coeffs(ts)
    integrand = c.d_alpha ** 2 * float(second_moment) + c.d_sigma ** 2 * dim
    return float(0.5 * (hi - lo) * (torch.as_tensor(weights, dtype=torch.float64) * integrand).sum())
