"""Recipes: where learning meets sampling.  Importing this package registers every recipe in the zoo.

    dl.recipes.toy           the 2D MLP recipes (8g_*, moons_*, 8g_to_moons, 8g_cond)
    dl.recipes.images        the U-Net recipes (digits8_*, mnist5k_*) and generate(model, labels, ...)
    dl.recipes.classifiers   the digit classifiers of dl.digit_eval (digit_classifier_*)
    dl.recipes.scores        chapter 03's energy and score models
    dl.recipes.flows         chapter 05's flow-matching and reflow models
"""
from . import classifiers, flows, images, scores, toy

__all__ = ["classifiers", "flows", "images", "scores", "toy"]
