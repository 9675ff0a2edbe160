"""The digit classifiers of dl.digit_eval as zoo recipes: a small CNN per dataset, trained on HELD-OUT data.

    net = dl.zoo.load("digit_classifier_mnist5k")     # DigitCNN in eval mode, hash-checked
    python -m dpm_lab.zoo build digit_classifier_mnist5k digit_classifier_digits8   # about a minute

Each classifier trains on the held-out split only (cross-entropy, AdamW with weight decay 1e-4,
a one-cycle learning rate, random whole-pixel shifts as augmentation), so it never sees the images
a generative model trains on; its accuracy on the unseen training split goes into the manifest.
Builder version "digit_cnn/1": bump it when DigitCNN or the training loop change what a spec means.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import images
from ..digit_eval import classifier_name
from ..zoo import Recipe, register

__all__ = ["BUILDER", "DigitCNN", "random_shift", "CLASSIFIER_RECIPES"]

BUILDER = "digit_cnn/1"
_LOADERS = {"mnist5k": images.load_mnist5k, "digits8": images.load_digits8}
# per dataset: image side, epochs, max random shift (pixels) used as augmentation
_SETTINGS = {"mnist5k": {"size": 28, "epochs": 40, "shift": 2},
             "digits8": {"size": 8, "epochs": 60, "shift": 1}}


class DigitCNN(nn.Module):
    """A small CNN digit classifier (about 90k weights); `features` gives its 64-d penultimate layer.

    Args:
        size: image side, 28 (three conv + pool stages) or 8 (two convs, one pool).
    Input (B, 1, size, size) in [-1, 1]; output (B, 10) logits.
    """

    def __init__(self, size: int = 28):
        super().__init__()
        if size not in (28, 8):
            raise ValueError(f"size must be 28 or 8, got {size!r}")
        self.size = size
        conv = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()]
        if size == 28:  # 28 -> 14 -> 7 -> 3
            conv += [nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                     nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            flat = 64 * 3 * 3
        else:  # 8 -> 4
            conv += [nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            flat = 64 * 4 * 4
        self.conv = nn.Sequential(*conv, nn.Flatten())
        self.fc = nn.Linear(flat, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, 64)."""
        return F.relu(self.fc(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def random_shift(x: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by a random whole number of pixels in [-max_shift, max_shift] (background -1).

    Args:
        x: (B, C, H, W) images in [-1, 1].
        max_shift: the largest shift in pixels (0: return x).
        generator: draws the shifts (on the CPU).
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def _model(spec: dict) -> DigitCNN:
    return DigitCNN(spec["size"])


def _data(spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The split spec['split'] (the held-out one) of spec['data']: images (N, 1, H, W), labels (N,)."""
    return _LOADERS[spec["data"]](spec["split"])


def _loss(spec: dict):
    """Per-sample cross-entropy of the classifier on randomly shifted images."""
    def loss(model, x, y, *, generator=None):
        return F.cross_entropy(model(random_shift(x, spec["shift"], generator=generator)), y, reduction="none")
    return loss


def _train(model: DigitCNN, recipe: Recipe, *, device="cpu", progress: bool = False) -> dict:
    """Epochs of shuffled minibatches with AdamW and a one-cycle learning rate; accuracy on the other split.

    Deterministic for a given seed, torch version and thread count.
    """
    spec = recipe.spec
    x, y = (t.to(device) for t in recipe.data(spec))
    loss_fn = recipe.loss(spec)
    model.to(device).train()
    g = torch.Generator().manual_seed(spec["seed"])
    steps = spec["epochs"] * ((len(x) + spec["batch"] - 1) // spec["batch"])
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"], total_steps=steps)
    for epoch in range(spec["epochs"]):
        perm = torch.randperm(len(x), generator=g).to(device)
        for i in range(0, len(x), spec["batch"]):
            j = perm[i:i + spec["batch"]]
            loss = loss_fn(model, x[j], y[j], generator=g).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress and (epoch + 1) % 10 == 0:
            print(f"  {recipe.name} epoch {epoch + 1}/{spec['epochs']}: loss {loss.item():.4f}")
    model.eval()
    x_test, y_test = _LOADERS[spec["data"]]("train", device=device)
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    return {"final_loss": round(loss.item(), 5), "trained_on": f"{spec['split']} split",
            "accuracy_on_train_split": round(acc, 4), "n_train_split": len(y_test),
            "threads": torch.get_num_threads()}


def _recipe(dataset: str) -> Recipe:
    cfg = _SETTINGS[dataset]
    spec = {"data": dataset, "split": "heldout", **cfg, "batch": 64, "lr": 3e-3, "weight_decay": 1e-4, "seed": 0}
    return register(Recipe(classifier_name(dataset), BUILDER, spec, _model, _data, _loss,
                           shape=(1, cfg["size"], cfg["size"]), n_classes=10, trainer=_train,
                           description=f"{dataset} digit classifier (DigitCNN) for dl.digit_eval, "
                                       f"trained on the held-out split only"))


CLASSIFIER_RECIPES = [_recipe(d) for d in _SETTINGS]
