"""The recipes: what each family declares, the shipped models against exact fields and a classifier,
image sampling with `generate`, and the digit classifiers' network, augmentation and training loop."""
import json
from dataclasses import replace

import pytest
import torch

import dpm_lab as dl
from dpm_lab import recipes, zoo
from dpm_lab.recipes import classifiers, flows, scores, toy
from dpm_lab.recipes.images import IMAGE_RECIPES, generate

FAMILIES = {"toy/1": toy.TOY_RECIPES, "unet/1": IMAGE_RECIPES, "digit_cnn/1": classifiers.CLASSIFIER_RECIPES,
            "scores/1": scores.SCORE_RECIPES}


def test_every_family_registers_its_recipes():
    assert set(dl.recipes.__all__) == {"toy", "images", "classifiers", "scores", "flows", "transport", "guide", "distill", "flowmaps", "discrete"} and dl.recipes is recipes
    for builder, family in FAMILIES.items():
        assert family and all(zoo.get(r.name) is r and r.builder == builder for r in family)
    # chapter 05's family mixes builders: MLP velocity fields (toy/1, flows/1) and normalizing flows (nflows/1)
    assert flows.FLOW_RECIPES and all(zoo.get(r.name) is r for r in flows.FLOW_RECIPES)
    assert {r.builder for r in flows.FLOW_RECIPES} == {"toy/1", "flows/1", "nflows/1"}
    assert {"digits8_uncond", "digits8_cond", "mnist5k_uncond", "mnist5k_cond", "mnist5k_cond_gpu"} \
        <= {r.name for r in IMAGE_RECIPES}
    assert {r.name for r in classifiers.CLASSIFIER_RECIPES} == {"digit_classifier_mnist5k", "digit_classifier_digits8"}
    assert not zoo.get("mnist5k_cond_gpu").shipped and zoo.get("mnist5k_cond").shipped


def _batch(recipe):
    """Four training examples (x0, c or None) of a recipe's data."""
    data = recipe.data(recipe.spec)
    out = data(4, generator=torch.Generator().manual_seed(0)) if callable(data) else data
    x, c = out if isinstance(out, tuple) else (out, None)
    return x[:4], (c[:4] if c is not None else None)


@pytest.mark.parametrize("recipe", [r for f in FAMILIES.values() for r in f], ids=lambda r: r.name)
def test_declared_shape_and_classes_fit_the_model_and_the_data(recipe):
    model = recipe.new_model()
    x, c = _batch(recipe)
    assert tuple(x.shape[1:]) == recipe.shape and (c is not None) == (recipe.n_classes > 0)
    with torch.no_grad():
        if recipe.builder == "digit_cnn/1":
            assert model(x).shape == (4, recipe.n_classes) and int(c.max()) < recipe.n_classes
        elif isinstance(model, dl.ebm.Energy):                 # chapter 03's energy: E(x) per point
            assert model(x).shape == (4,)
        else:
            assert model.predict(x, 0.5, model.kind, c=c).shape == x.shape
            if c is not None:                                   # label n_classes is the null label
                null = torch.full_like(c, recipe.n_classes)
                assert model.predict(x, 0.5, model.kind, c=null).shape == x.shape


# -- toy ------------------------------------------------------------------------------------------------------
def test_toy_recipe_builds_the_spec_it_is_given():
    r = toy.toy_recipe("test_toy_extra", "moons", "eps", "vp", train={"steps": 7})
    try:
        assert r.spec["train"]["steps"] == 7 and r.spec["net"]["dim"] == 2 and r.shape == (2,)
        assert r.spec["loss"]["p_time"]["name"] == "logit_normal"
        assert isinstance(r.new_model(), dl.nets.Predictor) and r.new_model().kind == "eps"
    finally:
        zoo._REGISTRY.pop("test_toy_extra")


def test_transport_loss_uses_the_source_as_noise():
    r = zoo.get("8g_to_moons")
    loss, model = r.loss(r.spec), r.new_model()
    x0 = dl.datasets.sample_2d("moons", 64, generator=torch.Generator().manual_seed(0))
    a = loss(model, x0, generator=torch.Generator().manual_seed(1))
    b = loss(model, x0, generator=torch.Generator().manual_seed(1))
    assert a.shape == (64,) and torch.equal(a, b)


@pytest.mark.parametrize("name,kind", [("8g_flow", "velocity"), ("8g_vp_eps", "eps"), ("8g_vp_x0", "eps")])
def test_shipped_toy_models_match_the_exact_field(name, kind):
    """At t = 0.5, on samples of p_t, relative RMS error to the mixture's closed form below 0.15."""
    model, mix = zoo.load(name), dl.datasets.eight_gaussians_mixture()
    x_t = mix.sample_marginal(2000, 0.5, model.schedule, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.predict(x_t, 0.5, kind)
    true = mix.predict(x_t, 0.5, model.schedule, kind)
    rel = ((got - true) ** 2).sum(1).mean().sqrt() / (true ** 2).sum(1).mean().sqrt()
    assert rel < 0.15, f"relative RMS error {rel:.3f}"


def _rel_rms(model, t, kind, mix):
    x_t = mix.sample_marginal(2000, t, model.schedule, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.predict(x_t, t, kind)
    true = mix.predict(x_t, t, model.schedule, kind)
    return float(((got - true) ** 2).sum(1).mean().sqrt() / (true ** 2).sum(1).mean().sqrt())


def test_chapter02_twins_share_the_chain_and_the_time_distribution():
    names = ("8g_ddpm100_eps", "8g_ddpm100_x0", "8g_ddpm100_x0_noskip")
    specs = [zoo.get(n).spec for n in names]
    assert all(s["schedule"] == toy.DDPM100 and s["loss"]["p_time"] == {"name": "discrete", "L": 100} for s in specs)
    assert all(s["net"] == specs[0]["net"] and s["train"] == specs[0]["train"] for s in specs)
    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64).sqrt()
    assert torch.equal(zoo.get(names[0]).new_model().schedule.betas, betas)     # the chapter's chain, bit for bit


@pytest.mark.parametrize("name", ["8g_ddpm100_eps", "8g_ddpm100_x0"])
def test_chapter02_twins_match_the_exact_field(name):
    """Both working twins: noise prediction within 5 % at t = 0.5 and 30 % at t = 0.05 (relative RMS)."""
    model, mix = zoo.load(name), dl.datasets.eight_gaussians_mixture()
    assert _rel_rms(model, 0.5, "eps", mix) < 0.05 and _rel_rms(model, 0.05, "eps", mix) < 0.3


def test_chapter02_x0_without_skip_fails_at_low_noise():
    """The failure the chapter shows: fine at t = 0.5, but its noise error at t = 0.02 exceeds the noise itself."""
    model, mix = zoo.load("8g_ddpm100_x0_noskip"), dl.datasets.eight_gaussians_mixture()
    assert _rel_rms(model, 0.5, "eps", mix) < 0.05 and _rel_rms(model, 0.02, "eps", mix) > 1.0


def test_shipped_conditional_toy_follows_its_label():
    model, mix = zoo.load("8g_cond"), dl.datasets.eight_gaussians_mixture()
    assert zoo.recipe_of(model).n_classes == 8
    x_t = mix.sample_marginal(1000, 0.5, model.schedule, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.predict(x_t, 0.5, "x0", c=3)
    true = mix.x0(x_t, 0.5, model.schedule, c=3)
    assert ((got - true) ** 2).sum(1).mean().sqrt() < 0.15 * (true ** 2).sum(1).mean().sqrt()


# -- images ---------------------------------------------------------------------------------------------------
def test_generate_takes_shape_and_classes_from_the_recipe():
    g = torch.Generator().manual_seed(0)
    x = generate(zoo.get("digits8_cond").new_model(), torch.arange(4), omega=2.0, nfe=4, generator=g)
    assert x.shape == (4, 1, 8, 8) and float(x.abs().max()) <= 1
    x = generate(zoo.get("mnist5k_uncond").new_model(), n=2, nfe=2, method="ddim", generator=g)
    assert x.shape == (2, 1, 28, 28)
    a = generate(zoo.get("digits8_uncond").new_model(), n=3, nfe=2, generator=torch.Generator().manual_seed(5))
    b = generate(zoo.get("digits8_uncond").new_model(), n=3, nfe=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_generate_needs_a_recipe_or_an_explicit_shape():
    model = zoo.get("digits8_uncond").new_model()
    del model.recipe_name
    with pytest.raises(ValueError, match="does not come from a zoo recipe"):
        generate(model, n=2, nfe=2)
    assert generate(model, n=2, nfe=2, shape=(1, 8, 8), n_classes=0).shape == (2, 1, 8, 8)


def test_generate_rejects_bad_labels_and_counts():
    cond, uncond = zoo.get("digits8_cond").new_model(), zoo.get("digits8_uncond").new_model()
    with pytest.raises(ValueError, match="unconditional"):
        generate(uncond, torch.arange(3))
    with pytest.raises(ValueError, match="positive int n"):
        generate(uncond)
    with pytest.raises(ValueError, match=r"classes in \[0, 10\)"):
        generate(cond, torch.tensor([3, 10]))


def test_short_image_training_lowers_the_loss():
    recipe = zoo.get("digits8_cond")
    model = recipe.new_model()
    loss = recipe.loss(recipe.spec)
    x, c = recipe.data(recipe.spec)
    losses = [r.loss for r in dl.train.fit(model, loss, (x, c), steps=80, batch=64, lr=2e-3, seed=0, device="cpu")]
    first, last = sum(losses[:5]) / 5, sum(losses[-20:]) / 20
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("name", ["mnist5k_cond", "digits8_cond"])
def test_shipped_conditional_image_models_follow_their_labels(name):
    # the checkpoints in data/zoo: guided samples are recognised as the requested digit
    model = zoo.load(name)
    labels = torch.arange(100) % 10
    x = generate(model, labels, omega=2.0, nfe=10, lam_interval=(-1.69, 1.27),
                 generator=torch.Generator().manual_seed(0))
    assert dl.digit_eval.conditional_accuracy(x, labels) >= 0.9


# -- classifiers ----------------------------------------------------------------------------------------------
def test_digit_cnn_shapes_and_sizes():
    for size in (28, 8):
        net = classifiers.DigitCNN(size)
        x = torch.zeros(3, 1, size, size)
        assert net(x).shape == (3, 10) and net.features(x).shape == (3, 64)
        assert sum(p.numel() for p in net.parameters()) < 150_000
    with pytest.raises(ValueError, match="size must be 28 or 8"):
        classifiers.DigitCNN(16)


def test_random_shift_is_seeded_and_keeps_shape():
    x, _ = dl.images.load_digits8("heldout")
    a = classifiers.random_shift(x, 1, generator=torch.Generator().manual_seed(3))
    b = classifiers.random_shift(x, 1, generator=torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(classifiers.random_shift(x, 0), x)
    one = torch.full((1, 1, 3, 3), -1.0)
    one[0, 0, 1, 1] = 1.0
    moved = classifiers.random_shift(one.expand(50, 1, 3, 3), 1, generator=torch.Generator().manual_seed(0))
    assert ((moved == 1).flatten(1).sum(1) == 1).all() and len({int(m.argmax()) for m in moved}) > 1
    with pytest.raises(ValueError, match="max_shift"):
        classifiers.random_shift(x, -1)


def test_classifier_recipe_trains_on_the_heldout_split(tmp_path):
    recipe = zoo.get("digit_classifier_digits8")
    assert recipe.spec["split"] == "heldout" and recipe.trainer is not None
    short = replace(recipe, name="test_short_classifier", spec={**json.loads(json.dumps(recipe.spec)), "epochs": 3},
                    shipped=False)
    zoo.register(short)
    try:
        zoo.build(short.name, root=tmp_path)
        entry = dl.store.read_manifest(tmp_path)[short.name]
        assert entry["trained_on"] == "heldout split" and entry["n_train_split"] == 1438
        assert entry["accuracy_on_train_split"] > 0.6
        net = zoo.load(short.name, root=tmp_path)
        x, y = dl.images.load_digits8("train")
        assert (net(x).argmax(1) == y).float().mean().item() == pytest.approx(entry["accuracy_on_train_split"], abs=1e-4)
    finally:
        zoo._REGISTRY.pop(short.name)
