"""Recipes: where learning meets sampling.  Importing this package registers every recipe in the zoo.

    dl.recipes.toy           the 2D MLP recipes (8g_*, moons_*, 8g_to_moons, 8g_cond)
    dl.recipes.images        the U-Net recipes (digits8_*, mnist5k_*) and generate(model, labels, ...)
    dl.recipes.classifiers   the digit classifiers of dl.digit_eval (digit_classifier_*)
    dl.recipes.scores        chapter 03's energy and score models
    dl.recipes.flows         chapter 05's flow-matching and reflow models
    dl.recipes.transport     chapter 07's OT-coupled flows and learned bridges
    dl.recipes.guide         chapter 08's classifiers and aligned models
    dl.recipes.distill       chapter 10's students
    dl.recipes.flowmaps      chapter 11's flow-map models
    dl.recipes.discrete      chapter 12's masked-diffusion model
"""
from . import classifiers, discrete, distill, flowmaps, flows, guide, images, scores, toy, transport

__all__ = ["classifiers", "flows", "images", "scores", "toy", "transport", "guide", "distill", "flowmaps", "discrete"]
