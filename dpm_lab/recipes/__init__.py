"""Recipes: where learning meets sampling.  Importing this package registers every recipe in the zoo.

    dl.recipes.toy           the 2D MLP recipes (8g_*, moons_*, 8g_to_moons, 8g_cond)
    dl.recipes.images        the U-Net recipes (digits8_*, mnist5k_*) and generate(model, labels, ...)
    dl.recipes.classifiers   the digit classifiers of dl.digit_eval (digit_classifier_*)
"""
from . import classifiers, images, toy

__all__ = ["classifiers", "images", "toy"]
