"""dpm_lab: the companion package of the dpm-lab course on *The Principles of Diffusion Models*.

    import dpm_lab as dl
    sched = dl.VPLinear()
    gmm = dl.datasets.eight_gaussians_mixture()
    eps = gmm.eps(x_t, t, sched)          # exact E[eps | x_t]
"""
from . import datasets, gmm, grids, param, schedules, utils  # math core, ground truth, data
from . import digit_eval, images, store  # image data, storage and evaluation
from . import dynamics, fast_solvers, guidance, likelihood, samplers  # sampling
from . import losses, metrics, nets, train, zoo  # learning and metrics
from . import recipes  # registers every recipe (toy, images, classifiers) in the zoo
from . import exercises, notebook, viz, widgets  # seeing (course, the tooling, is not imported here)
from .gmm import GaussianMixture, MixtureModel, PointSet
from .grids import GRIDS, time_grid
from .samplers import SOLVERS, sample, solve, trajectory
from .param import KINDS, Model, all_predictions, convert, error_scale, pf_ode_drift, target_coefficients, to_x0_eps
from .schedules import (EDM, SCHEDULES, Cosine, DiscreteSchedule, RectifiedFlow, Schedule, Trig, VEGeometric,
                        VPLinear, get_schedule)
from .notebook import choose_threads, setup_notebook
from .utils import as_time, check_x, device, expand_t, seed

__version__ = "0.1.0"
