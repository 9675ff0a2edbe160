"""dpm_lab: the companion package of the dpm-lab course on *The Principles of Diffusion Models*.

    import dpm_lab as dl
    sched = dl.VPLinear()
    gmm = dl.datasets.eight_gaussians_mixture()
    eps = gmm.eps(x_t, t, sched)          # exact E[eps | x_t]

Layers, bottom up (docs/DESIGN.md; tests/test_layers.py holds the arrows): math core, ground
truth, data and storage, learning, sampling, beyond, recipes, seeing. `course` (tooling) is not
imported here: run it as `python -m dpm_lab.course`.
"""
# math core, ground truth, data and storage
from . import datasets, gmm, grids, images, param, schedules, store, utils

# learning and sampling
from . import ebm, losses, nets, nflows, train, zoo
from . import dynamics, fast_solvers, fokker_planck, guidance, likelihood, samplers, steps

# beyond, recipes (importing them registers every recipe in the zoo), seeing
from . import align, digit_eval, discrete, distill, flowmaps, metrics, ot, reflow
from . import recipes
from . import exercises, notebook, viz, widgets

from .gmm import GaussianMixture, MixtureModel, PointSet
from .grids import GRIDS, default_spacing, time_grid
from .notebook import choose_threads, setup_notebook
from .param import (KINDS, TABLE, Model, all_predictions, coefficients, convert, error_scale, pf_ode_drift,
                    target_coefficients, to_x0_eps)
from .samplers import DEFAULT_METHOD, SOLVERS, Solver, StepRecord, get_solver, sample, solve, steps_for_nfe, trajectory
from .schedules import (EDM, SCHEDULES, Coeffs, Cosine, DiscreteSchedule, RectifiedFlow, Schedule, Trig,
                        VEGeometric, VPLinear, get_schedule)
from .utils import as_time, check_x, device, expand_t, seed

__version__ = "0.1.0"
