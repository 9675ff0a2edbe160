"""Chapter 12's recipe: the shipped masked-diffusion model against the exact data law."""
import torch

import dpm_lab as dl
from dpm_lab import discrete as D
from dpm_lab.recipes import discrete as R


def test_recipe_registers_and_builds_what_it_declares():
    recipe = R.DISCRETE_RECIPES[0]
    assert [r.name for r in R.DISCRETE_RECIPES] == ["masked_chain4", "uniform_chain4"]
    assert dl.zoo.get("masked_chain4") is recipe and recipe.builder == "discrete/1" and recipe.shape == (4,)
    model = recipe.new_model()
    x0 = recipe.data(recipe.spec)(8, generator=torch.Generator().manual_seed(0))
    assert x0.shape == (8, 4) and x0.dtype == torch.long
    assert recipe.loss(recipe.spec)(model, x0, None, generator=torch.Generator().manual_seed(0)).shape == (8,)


def test_shipped_model_samples_close_to_the_data_law():
    model = dl.zoo.load("masked_chain4")
    law = R.chain_law()
    exact = D.exact_denoiser(law)
    learned64 = D.kl(law.probs, D.sampler_law(model, law, 64))
    # the learned sampler sits within a few thousandths of a nat of the data, above the exact sampler's own error
    assert learned64 < 3e-3 and learned64 > D.kl(law.probs, D.sampler_law(exact, law, 64))
    # and one step still pays (almost exactly) the total correlation: parallel unmasking cannot be exact
    assert abs(D.kl(law.probs, D.sampler_law(model, law, 1)) - D.total_correlation(law)) < 0.01
    # its law is closer to the data than a second draw of 2,000 sequences is (total variation)
    g = torch.Generator().manual_seed(0)
    floor = [float((law.histogram(law.sample(2000, generator=g)) - law.histogram(law.sample(2000, generator=g))).abs().sum() / 2)
             for _ in range(5)]
    tv = float((law.probs - D.sampler_law(model, law, 64)).abs().sum() / 2)
    assert tv < 0.5 * min(floor)


def test_shipped_uniform_model_samples_close_to_the_data_law():
    model = dl.zoo.load("uniform_chain4")
    law = R.chain_law()
    kl64 = D.kl(law.probs, D.uniform_sampler_law(model, law, 64))
    exact64 = D.kl(law.probs, D.uniform_sampler_law(D.exact_uniform_denoiser(law), law, 64))
    assert exact64 < kl64 < 5e-3
