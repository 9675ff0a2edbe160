"""Small networks and the Predictor wrapper that turns a network into a param.Model.

Every network takes (x, t, c=None): x of shape (B, *D), a continuous time t in [0, 1]
(a float, 0-d or (B,) tensor; or any real "noise input" such as -lambda_t / 4), and an
optional class label c (int or (B,) long).  Networks with `n_classes = K > 0` reserve the
index K as the null label of classifier-free guidance (§8.3): c=None means "unconditional".

    net = MLP(dim=2, hidden=128, depth=3)
    model = Predictor(net, dl.RectifiedFlow(), "velocity")   # a param.Model: model.eps(x, t) ...
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .param import KINDS, Label, Model
from .schedules import Schedule
from .utils import Time, as_time, check_choice, expand_t, randn

__all__ = ["SinusoidalEmbedding", "FourierEmbedding", "MLP", "UNet", "Classifier2D", "ImageClassifier",
           "Predictor", "edm_coefficients"]


def _batch_time(t: Time, x: torch.Tensor) -> torch.Tensor:
    """A float, 0-d or (B,) time as a (B,) tensor in x's dtype and device (no range check)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t


def _batch_label(c: Label, x: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """Labels as a (B,) long tensor; None becomes the null label n_classes."""
    if n_classes == 0:
        if c is not None:
            raise ValueError("this network is unconditional (n_classes=0) but a class c was given")
        return None
    if c is None:
        return torch.full((x.shape[0],), n_classes, dtype=torch.long, device=x.device)
    c = torch.as_tensor(c, dtype=torch.long, device=x.device)
    c = c.expand(x.shape[0]) if c.dim() == 0 else c
    if c.shape != (x.shape[0],) or (c < 0).any() or (c > n_classes).any():
        raise ValueError(f"c must be an int or (B,) labels in 0..{n_classes} ({n_classes} = null label)")
    return c


class SinusoidalEmbedding(nn.Module):
    """Transformer-style time features [sin(scale t f_k), cos(scale t f_k)], f_k = P^(-k/(dim/2)).

    Args: dim (even) output size; scale maps t in [0, 1] to the range of positions (1000 as in DDPM);
    max_period P. Input (B,), output (B, dim).
    """

    def __init__(self, dim: int = 32, scale: float = 1000.0, max_period: float = 10_000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1).to(t.dtype)


class FourierEmbedding(nn.Module):
    """Random Fourier features [sin(2 pi w_k t), cos(2 pi w_k t)], w_k ~ N(0, scale^2) fixed (Tancik et al.).

    Args: dim (even); scale; generator for the frozen frequencies (drawn on its device, kept on the CPU
    until the module moves). Input (B,), output (B, dim).
    """

    def __init__(self, dim: int = 32, scale: float = 16.0, *, generator: torch.Generator | None = None):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.register_buffer("w", randn((dim // 2,), generator=generator, device="cpu") * scale * 2 * math.pi)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t[:, None].to(self.w.dtype) * self.w
        return torch.cat([torch.sin(arg), torch.cos(arg)], -1).to(t.dtype)


class MLP(nn.Module):
    """Time- (and class-) conditioned MLP for low-dimensional data: out = MLP([x, emb(t), emb(c)]).

    Args:
        dim: data dimension D (x is (B, D)); hidden: width; depth: number of hidden layers.
        n_classes: K > 0 adds a label embedding with K + 1 rows (row K = null label for CFG).
        t_dim: size of the sinusoidal time features (t itself is appended too).
        act: 'silu', 'selu', 'elu', 'gelu' or 'relu'. out_dim defaults to dim.
    """

    ACTS = {"silu": nn.SiLU, "selu": nn.SELU, "elu": nn.ELU, "gelu": nn.GELU, "relu": nn.ReLU}

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, *, n_classes: int = 0,
                 t_dim: int = 16, c_dim: int = 16, act: str = "silu", out_dim: int | None = None):
        super().__init__()
        check_choice(act, self.ACTS, "activation")
        if depth < 1 or hidden < 1:
            raise ValueError(f"depth and hidden must be >= 1, got depth={depth}, hidden={hidden}")
        self.dim, self.n_classes = dim, n_classes
        self.t_emb = SinusoidalEmbedding(t_dim) if t_dim else None
        self.c_emb = nn.Embedding(n_classes + 1, c_dim) if n_classes else None
        width = dim + 1 + t_dim + (c_dim if n_classes else 0)
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), self.ACTS[act]()]
            width = hidden
        layers.append(nn.Linear(width, out_dim or dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """x (B, D), t a float or (B,), c optional labels -> (B, out_dim)."""
        tb = _batch_time(t, x)
        parts = [x, tb[:, None]] + ([self.t_emb(tb)] if self.t_emb is not None else [])
        lab = _batch_label(c, x, self.n_classes)
        if lab is not None:
            parts.append(self.c_emb(lab))
        return self.body(torch.cat(parts, -1))


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the (time + class) embedding added in between."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(min(groups, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = nn.GroupNorm(min(groups, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.c1(torch.nn.functional.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        return self.skip(x) + self.c2(torch.nn.functional.silu(self.n2(h)))


class _Embed(nn.Module):
    """Time (and class, and extra scalar) embedding shared by the image networks: (B,) -> (B, emb).

    `extra = k > 0` adds k scalar conditions in [0, 1] (a second time r of a flow map, a guidance weight
    mapped to [0, 1], ...), each through its own sinusoidal features and a two-layer MLP whose last layer
    starts at zero: a network given extras starts out as the same network without them (`UNet.grow`).
    """

    def __init__(self, emb: int, n_classes: int, extra: int = 0):
        super().__init__()
        self.n_classes, self.extra = n_classes, extra
        self.t = nn.Sequential(SinusoidalEmbedding(emb), nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.c = nn.Embedding(n_classes + 1, emb) if n_classes else None
        self.x = nn.ModuleList(nn.Sequential(SinusoidalEmbedding(emb), nn.Linear(emb, emb), nn.SiLU(),
                                             nn.Linear(emb, emb)) for _ in range(extra))
        for m in self.x:
            nn.init.zeros_(m[-1].weight)
            nn.init.zeros_(m[-1].bias)

    def forward(self, x: torch.Tensor, t: Time, c: Label, extra: torch.Tensor | None = None) -> torch.Tensor:
        e = self.t(_batch_time(t, x))
        lab = _batch_label(c, x, self.n_classes)
        e = e if lab is None else e + self.c(lab)
        for j, v in enumerate(_batch_extra(extra, x, self.extra).unbind(1)):
            e = e + self.x[j](v)
        return e


def _batch_extra(extra, x: torch.Tensor, k: int) -> torch.Tensor:
    """The extra scalar conditions as (B, k) in x's dtype; None is allowed only when k = 0."""
    if extra is None:
        if k:
            raise ValueError(f"this network takes extra = {k} scalar condition(s) (B, {k}); none was given")
        return x.new_zeros(x.shape[0], 0)
    if not k:
        raise ValueError("this network takes no extra conditions (extra=0) but extra was given")
    extra = torch.as_tensor(extra, dtype=x.dtype, device=x.device)
    extra = extra.expand(x.shape[0], k) if extra.dim() < 2 else extra
    if extra.shape != (x.shape[0], k) or not torch.isfinite(extra).all():
        raise ValueError(f"extra must be finite with shape ({x.shape[0]}, {k}) (or broadcast to it), "
                         f"got {tuple(extra.shape)}")
    return extra


class UNet(nn.Module):
    """A small U-Net for (B, C, H, W) images (e.g. 1x8x8 digits, 1x28x28 MNIST); no attention.

    Level i works at resolution H / 2^i with base * mults[i] channels (one residual block per level
    on the way down, one on the way up, with skip connections).  H and W must be divisible by
    2^(len(mults) - 1): mults=(1, 2) for 8x8, (1, 2, 2) for 28x28.

    Args: in_ch; base channels; mults; n_classes (K > 0: label K is the null label); emb size; groups;
    extra: k scalar conditions in [0, 1] beside t (forward's `extra`, (B, k)), e.g. a flow map's second time
    or a guidance weight; `UNet.grow(teacher, k)` copies a trained network and adds them at zero effect.
    """

    def __init__(self, in_ch: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2), *, n_classes: int = 0,
                 emb: int = 64, groups: int = 8, extra: int = 0):
        super().__init__()
        self.levels = len(mults)
        self.config = {"in_ch": in_ch, "base": base, "mults": tuple(mults), "n_classes": n_classes, "emb": emb,
                       "groups": groups, "extra": extra}
        chs = [base * m for m in mults]
        self.embed = _Embed(emb, n_classes, extra)
        self.inp = nn.Conv2d(in_ch, chs[0], 3, padding=1)
        self.down = nn.ModuleList(_ResBlock(chs[max(i - 1, 0)], chs[i], emb, groups) for i in range(self.levels))
        self.pool = nn.ModuleList(nn.Conv2d(chs[i], chs[i], 3, stride=2, padding=1) for i in range(self.levels - 1))
        self.mid = _ResBlock(chs[-1], chs[-1], emb, groups)
        self.up = nn.ModuleList(_ResBlock(2 * chs[i], chs[max(i - 1, 0)], emb, groups) for i in range(self.levels))
        self.out = nn.Sequential(nn.GroupNorm(min(groups, chs[0]), chs[0]), nn.SiLU(), nn.Conv2d(chs[0], in_ch, 3, padding=1))

    @classmethod
    def grow(cls, teacher: UNet, extra: int) -> UNet:
        """A copy of `teacher` (same weights) that also takes `extra` scalar conditions, at first ignored
        (their embeddings' last layers are zero), so a student starts as its teacher."""
        if not isinstance(teacher, UNet):
            raise TypeError(f"teacher must be a nets.UNet, got {type(teacher).__name__}")
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 1:
            raise ValueError(f"extra must be an int >= 1 (the number of added conditions), got {extra!r}")
        net = cls(**{**teacher.config, "extra": extra}).to(next(teacher.parameters()).device)
        missing, unexpected = net.load_state_dict(teacher.state_dict(), strict=False)
        if unexpected or any(not k.startswith("embed.x.") for k in missing):
            raise ValueError(f"teacher's weights do not fit: missing {missing}, unexpected {unexpected}")
        return net

    def forward(self, x: torch.Tensor, t: Time, c: Label = None, extra: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t a float or (B,), c optional labels, extra (B, k) if built with extra=k
        -> (B, C, H, W)."""
        if x.dim() != 4:
            raise ValueError(f"UNet needs x of shape (B, C, H, W), got {tuple(x.shape)}")
        k = 2 ** (self.levels - 1)
        if x.shape[-1] % k or x.shape[-2] % k:
            raise ValueError(f"H and W must be divisible by {k} for {self.levels} levels, got {tuple(x.shape[-2:])}")
        e = self.embed(x, t, c, extra)
        h, skips = self.inp(x), []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < self.levels - 1:
                h = self.pool[i](h)
        h = self.mid(h, e)
        for i in reversed(range(self.levels)):
            if h.shape[-1] != skips[i].shape[-1]:
                h = torch.nn.functional.interpolate(h, size=skips[i].shape[-2:], mode="nearest")
            h = self.up[i](torch.cat([h, skips[i]], 1), e)
        return self.out(h)


class Classifier2D(nn.Module):
    """Noise-aware classifier p(c | x_t, t) for low-dimensional data: logits = MLP([x_t, emb(t)]) (§8.2).

    Args: dim; n_classes; hidden; depth. forward(x_t (B, D), t) -> logits (B, n_classes).
    """

    def __init__(self, dim: int = 2, n_classes: int = 8, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.net = MLP(dim, hidden, depth, out_dim=n_classes)

    def forward(self, x: torch.Tensor, t: Time) -> torch.Tensor:
        return self.net(x, t)


class ImageClassifier(nn.Module):
    """Noise-aware CNN classifier p(c | x_t, t) for (B, C, H, W) images (§8.2): two strided stages,
    time embedding added, global average pooling, linear head -> logits (B, n_classes)."""

    def __init__(self, in_ch: int = 1, n_classes: int = 10, base: int = 16, emb: int = 64, groups: int = 8):
        super().__init__()
        self.embed = _Embed(emb, 0)
        self.inp = nn.Conv2d(in_ch, base, 3, padding=1)
        self.b1, self.b2 = _ResBlock(base, base, emb, groups), _ResBlock(base, 2 * base, emb, groups)
        self.pool = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * base, n_classes)

    def forward(self, x: torch.Tensor, t: Time) -> torch.Tensor:
        e = self.embed(x, t, None)
        h = self.pool(self.b1(self.inp(x), e))
        h = torch.nn.functional.silu(self.b2(h, e))
        return self.head(h.mean((-2, -1)))


def edm_coefficients(schedule: Schedule, t: Time,
                     sigma_data: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM preconditioning for x_t = alpha x0 + sigma eps (App. D.6), in float64:

        R = alpha^2 sigma_d^2 + sigma^2,  c_in = 1/sqrt(R),  c_skip = alpha sigma_d^2 / R,
        c_out = sigma sigma_d / sqrt(R),  c_noise = -lambda_t / 4  (= log(sigma)/4 when alpha = 1).

    Args: t a float, 0-d or (B,) tensor.  Returns (c_skip, c_out, c_in, c_noise), each shaped like t;
    lambda is clipped to [-20, 20].
    """
    co = schedule.coeffs(t)
    a, s = co.alpha, co.sigma
    R = a ** 2 * sigma_data ** 2 + s ** 2
    lam = co.lam.clamp(-20.0, 20.0)
    return a * sigma_data ** 2 / R, s * sigma_data / R.sqrt(), 1 / R.sqrt(), -lam / 4


class Predictor(nn.Module, Model):
    """A network as a param.Model: the net predicts one kind; all others follow by conversion (§6.3.1).

    precond=None:  raw(x_t, t, c) = net(x_t, t, c), a prediction of `kind`.
    precond="edm": kind must be "x0" and raw = c_skip x_t + c_out net(c_in x_t, c_noise, c) (App. D.6);
                   noise_input="lambda" feeds c_noise = -lambda_t/4, "t" feeds t itself.

    Args:
        net: a module called as net(x, t, c) (MLP, UNet, ...); schedule: the forward schedule;
        kind: what raw() returns: x0, eps, score, velocity or v; sigma_data: the data std sigma_d.
    """

    def __init__(self, net: nn.Module, schedule: Schedule, kind: str = "eps", *, precond: str | None = None,
                 sigma_data: float = 1.0, noise_input: str = "lambda"):
        nn.Module.__init__(self)
        check_choice(kind, KINDS, "prediction kind")
        check_choice(str(precond), ("None", "edm"), "precond")
        check_choice(noise_input, ("lambda", "t"), "noise_input")
        if precond == "edm" and kind != "x0":
            raise ValueError(f"precond='edm' wraps an x0-prediction; got kind={kind!r}")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data}")
        self.net, self.schedule, self.kind = net, schedule, kind
        self.precond, self.sigma_data, self.noise_input = precond, float(sigma_data), noise_input

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The network's own prediction (of `self.kind`) at (x_t, t), shape like x_t."""
        t = as_time(t)
        if self.precond is None:
            return self.net(x_t, t.to(x_t.dtype), c)
        c_skip, c_out, c_in, c_noise = edm_coefficients(self.schedule, t, self.sigma_data)
        noise = c_noise if self.noise_input == "lambda" else t
        F = self.net(expand_t(c_in, x_t) * x_t, noise.to(x_t.dtype), c)
        return expand_t(c_skip, x_t) * x_t + expand_t(c_out, x_t) * F

    def forward(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        return self.raw(x_t, t, c)

    __call__ = nn.Module.__call__

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}, kind={self.kind!r}, precond={self.precond!r}"
