"""A small, generic training loop: `fit` yields typed records so a notebook can plot live.

    for rec in fit(model, loss, data, steps=3000, batch=256, lr=3e-3, seed=0):
        ...                                       # rec.step, rec.loss, rec.ema_loss, rec.lr, rec.elapsed
    train(model, loss, data, steps=3000)          # the same, run to the end; returns the records

`data` is a callable data(batch, *, generator) -> x0 or (x0, c), a tensor (N, *D), or a pair /
TensorDataset (x0, c) sampled with replacement.  `loss(model, x0, c, *, generator)` returns
per-sample losses (losses.DiffusionLoss, ScoreMatching, ...).  One torch.Generator seeded by
`seed` drives all randomness, and it is saved in checkpoints: a resumed run reproduces the
uninterrupted one exactly on CPU.  When the loop ends, is interrupted (KeyboardInterrupt) or
closed, the checkpoint (if any) is written atomically (store.save_atomic) and the EMA weights
are copied into `model`.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from . import store
from .utils import check_choice
from .utils import device as default_device

__all__ = ["Record", "EMA", "fit", "train", "lr_at", "make_batcher"]


@dataclass
class Record:
    """One logged training step: step (1-based count of finished steps), loss (this batch),
    ema_loss (smoothed), lr, elapsed seconds of training (time spent by the consumer between records
    is not counted), grad_norm (before clipping); `ema` holds the weight EMA (use ema.applied(model))."""

    step: int
    loss: float
    ema_loss: float
    lr: float
    elapsed: float
    grad_norm: float
    ema: EMA | None = field(default=None, repr=False)


class EMA:
    """Exponential moving average of parameters: shadow <- decay * shadow + (1 - decay) * param."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))      # warm start: early averages forget quickly
        for s, p in zip(self.shadow, model.parameters()):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily swap the averaged weights into `model` (e.g. to evaluate mid-training)."""
        saved = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for s, p in zip(saved, model.parameters()):
                    p.copy_(s)


def lr_at(step: int, steps: int, lr: float, schedule: str = "cosine", warmup: int = 0,
          final_frac: float = 0.0) -> float:
    """Learning rate at `step`: linear warmup, then constant, cosine or linear decay to final_frac * lr."""
    check_choice(schedule, ("constant", "cosine", "linear"), "lr schedule")
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    u = min(1.0, (step - warmup) / max(1, steps - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * u)) if schedule == "cosine" else 1 - u
    return lr * (final_frac + (1 - final_frac) * shape)


def make_batcher(data, batch: int, generator: torch.Generator, dev) -> Callable[[], tuple]:
    """A function () -> (x0, c or None) on `dev` from a callable, a tensor, a pair or a TensorDataset."""
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)):
        n = data[0].shape[0]
        if any(d.shape[0] != n for d in data):
            raise ValueError("data tensors must share their first dimension")

        def draw():
            idx = torch.randint(0, n, (batch,), generator=generator)
            out = [d[idx].to(dev) for d in data]
            return out[0], (out[1] if len(out) > 1 else None)
        return draw
    if not callable(data):
        raise TypeError(f"data must be a callable, a tensor, a tuple of tensors or a TensorDataset, got {type(data).__name__}")

    def call():
        out = data(batch, generator=generator)
        x0, c = out if isinstance(out, (tuple, list)) else (out, None)
        return x0.to(dev), (c.to(dev) if c is not None else None)
    return call


def _state(model, ema, opt, step, gen, ema_loss):
    return {"model": model.state_dict(), "ema": ema.shadow if ema else [], "opt": opt.state_dict(),
            "step": step, "generator": gen.get_state(), "ema_loss": ema_loss}


def _restore(path, model, ema, opt, gen):
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:                                    # truncated or not a checkpoint
        raise RuntimeError(f"cannot resume: {path} is not a readable checkpoint ({err})") from err
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["opt"])
    if ema is not None and st["ema"]:
        ema.shadow = [s.to(p.device) for s, p in zip(st["ema"], model.parameters())]
    gen.set_state(st["generator"])
    return int(st["step"]), float(st["ema_loss"])


def _optimizer_step(model: nn.Module, loss: Callable, x0: torch.Tensor, c, gen: torch.Generator,
                    opt: torch.optim.Optimizer, clip: float | None, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam(W) step on the batch mean of the per-sample loss, the gradient norm clipped to `clip`.

    Returns (the loss before the step, the gradient norm before clipping); a non-finite loss raises.
    """
    value = loss(model, x0, c, generator=gen).mean()
    if not torch.isfinite(value):
        raise FloatingPointError(f"loss is {value.item()} at step {step}; lower lr or check the data")
    opt.zero_grad(set_to_none=True)
    value.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
    opt.step()
    return value, norm


def fit(model: nn.Module, loss: Callable, data, *, steps: int = 2000, batch: int = 256, lr: float = 1e-3,
        lr_schedule: str = "cosine", warmup: int = 0, final_lr_frac: float = 0.0, weight_decay: float = 0.0,
        ema: float | None = 0.999, clip: float | None = 1.0, seed: int = 0, checkpoint: str | None = None,
        save_every: int = 0, resume: bool = False, progress: bool = False, log_every: int = 1,
        device: torch.device | str | None = None) -> Iterator[Record]:
    """Train `model` with Adam(W) on loss(model, x0, c, generator=g).mean(), yielding a Record every
    `log_every` steps.

    Args:
        model: an nn.Module (e.g. nets.Predictor); loss: per-sample loss callable; data: see module doc.
        steps, batch, lr; lr_schedule: 'constant' | 'cosine' | 'linear' (+ warmup steps, final_lr_frac).
        ema: EMA decay of the weights (None: off); clip: max gradient norm (None: off).
        seed: seeds the one generator; checkpoint: a path, saved every save_every steps and at the end;
        resume: continue from `checkpoint` if it exists; progress: a tqdm.auto bar; device: default dl.device().
    """
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    dev = torch.device(device) if device is not None else default_device()
    model.to(dev).train()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    avg = EMA(model, ema) if ema else None
    start, ema_loss = 0, float("nan")
    if resume and checkpoint and os.path.exists(checkpoint):
        start, ema_loss = _restore(checkpoint, model, avg, opt, gen)
    draw = make_batcher(data, batch, gen, dev)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc="training")
    done, t0 = start, time.perf_counter()
    try:
        for step in range(start, steps):
            rate = lr_at(step, steps, lr, lr_schedule, warmup, final_lr_frac)
            for group in opt.param_groups:
                group["lr"] = rate
            x0, c = draw()
            value, norm = _optimizer_step(model, loss, x0, c, gen, opt, clip, step)
            if avg:
                avg.update(model, step)
            done = step + 1
            v = value.item()
            ema_loss = v if math.isnan(ema_loss) else 0.98 * ema_loss + 0.02 * v
            if checkpoint and save_every and done % save_every == 0:
                store.save_atomic(_state(model, avg, opt, done, gen, ema_loss), checkpoint)
            if bar is not None:
                bar.update(1)
                if done % 50 == 0:
                    bar.set_postfix(loss=f"{ema_loss:.4f}")
            if done % log_every == 0 or done == steps:
                pause = time.perf_counter()
                yield Record(done, v, ema_loss, rate, pause - t0, float(norm), avg)
                t0 += time.perf_counter() - pause          # time spent by the consumer does not count
    except KeyboardInterrupt:
        print(f"fit: interrupted after {done} steps" + ("; EMA weights copied in" if avg else "")
              + (f"; state saved to {checkpoint}" if checkpoint else ""))
    finally:
        if bar is not None:
            bar.close()
        if checkpoint and done > start:
            store.save_atomic(_state(model, avg, opt, done, gen, ema_loss), checkpoint)
        if avg:
            avg.copy_to(model)
        model.eval()


def train(model: nn.Module, loss: Callable, data, **kwargs) -> list[Record]:
    """Run fit(...) to the end and return its records (the model ends with its EMA weights)."""
    return [_strip(r) for r in fit(model, loss, data, **kwargs)]


def _strip(r: Record) -> Record:
    """A record without its reference to the EMA (so a list of records does not pin the weights)."""
    return Record(r.step, r.loss, r.ema_loss, r.lr, r.elapsed, r.grad_norm)
