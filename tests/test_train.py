"""The training loop: records, repeatability, EMA, atomic checkpoints, resume and interruption."""
import os

import pytest
import torch

import dpm_lab as dl
from dpm_lab import losses, nets
from dpm_lab.train import EMA, Record, fit, lr_at, train

MIX = dl.datasets.eight_gaussians_mixture()


def _model(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nets.Predictor(nets.MLP(2, 32, 2), dl.RectifiedFlow(), "velocity")


def _data(n, *, generator=None):
    return MIX.sample(n, generator=generator)


def _params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


KW = dict(steps=60, batch=64, lr=3e-3, device="cpu")


def test_fit_yields_records_and_loss_decreases():
    recs = list(fit(_model(), losses.cfm(), _data, log_every=10, **{**KW, "steps": 300}))
    assert [r.step for r in recs] == list(range(10, 301, 10))
    assert all(isinstance(r, Record) and r.elapsed >= 0 for r in recs)
    assert recs[-1].ema_loss < recs[0].ema_loss
    assert recs[-1].lr == pytest.approx(lr_at(299, 300, 3e-3))


def test_same_seed_same_parameters_and_ema_copied_in():
    a, b = _model(), _model()
    train(a, losses.cfm(), _data, seed=3, **KW)
    recs = train(b, losses.cfm(), _data, seed=3, **KW)
    assert torch.equal(_params(a), _params(b))
    assert recs[-1].ema is None                                       # train() drops the EMA reference
    c = _model()
    g = fit(c, losses.cfm(), _data, seed=3, **KW)
    for rec in g:
        shadow = torch.cat([s.flatten() for s in rec.ema.shadow])
    assert torch.equal(_params(c), shadow)                           # at the end the model holds the EMA


def test_data_as_tensor_pair_and_dataset(gen):
    x, c = MIX.sample(500, generator=gen, return_labels=True)
    model = nets.Predictor(nets.MLP(2, 16, 1, n_classes=8), dl.RectifiedFlow(), "velocity")
    loss = losses.DiffusionLoss(dl.RectifiedFlow(), "velocity", p_uncond=0.1, null_label=8)
    for data in (x, (x, c), torch.utils.data.TensorDataset(x, c)):
        assert len(train(model, loss if isinstance(data, tuple) or not torch.is_tensor(data) else losses.cfm(),
                         data, steps=5, batch=16, device="cpu")) == 5
    with pytest.raises(TypeError, match="data must be"):
        list(fit(model, losses.cfm(), 3.0, steps=2, device="cpu"))


def test_resume_equals_uninterrupted_run(tmp_path):
    ref = _model()
    train(ref, losses.cfm(), _data, seed=5, **KW)
    ckpt = tmp_path / "run.pt"
    first = _model()
    gen = fit(first, losses.cfm(), _data, seed=5, checkpoint=str(ckpt), **KW)
    for rec in gen:
        if rec.step == 25:
            break
    gen.close()                                                      # like an interrupted notebook cell
    assert torch.load(ckpt, weights_only=True)["step"] == 25
    resumed = _model()
    train(resumed, losses.cfm(), _data, seed=5, checkpoint=str(ckpt), resume=True, **KW)
    assert torch.equal(_params(resumed), _params(ref))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_keyboard_interrupt_leaves_a_usable_model(tmp_path, capsys):
    calls = {"n": 0}

    def loss(model, x0, c=None, *, generator=None):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return losses.cfm()(model, x0, c, generator=generator)

    model, ckpt = _model(), tmp_path / "int.pt"
    recs = list(fit(model, loss, _data, checkpoint=str(ckpt), **KW))
    assert len(recs) == 10 and "interrupted after 10 steps" in capsys.readouterr().out
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 10 and torch.equal(_params(model), torch.cat([s.flatten() for s in state["ema"]]))
    assert torch.isfinite(model.velocity(torch.zeros(3, 2), 0.5)).all()


def test_resume_from_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="not a readable checkpoint"):
        list(fit(_model(), losses.cfm(), _data, checkpoint=str(bad), resume=True, **KW))


def test_checkpoint_goes_to_a_new_folder_atomically(tmp_path):
    ckpt = tmp_path / "sub" / "run.pt"
    train(_model(), losses.cfm(), _data, checkpoint=str(ckpt), save_every=10, **{**KW, "steps": 20})
    assert torch.load(ckpt, weights_only=True)["step"] == 20 and os.listdir(ckpt.parent) == ["run.pt"]


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, "cosine", warmup=10) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, "cosine", warmup=10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, "linear", final_frac=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr schedule"):
        lr_at(0, 10, 1.0, "step")


def test_ema_applied_restores_weights():
    m = _model()
    ema = EMA(m, 0.9)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    before = _params(m)
    with ema.applied(m):
        assert not torch.equal(_params(m), before)
    assert torch.equal(_params(m), before)
