import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# property tests draw the same examples on every run (CI must not meet an example we never saw);
# run with HYPOTHESIS_PROFILE=explore to search fresh ones
settings.register_profile("repeatable", derandomize=True, deadline=None, database=None)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
import torch  # noqa: E402

torch.set_num_threads(1)

import dpm_lab as dl  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="torch device for the whole suite (cpu, cuda, cuda:1): tensors made without a device "
                          "land there, while torch.Generator() stays on the CPU, as a learner's would")


def pytest_configure(config):
    name = config.getoption("--device")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--device {name!r} is not a torch device: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name!r}: CUDA is not available on this machine")
    if dev.type != "cpu":
        torch.set_default_device(dev)
        os.environ["DPM_LAB_TEST_DEVICE"] = str(dev)


@pytest.fixture(scope="session")
def device(request) -> torch.device:
    """The device the suite runs on (--device; the CPU by default)."""
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def mixture2d():
    """A 2D anisotropic, labelled mixture used across the oracle tests."""
    covs = torch.tensor([[[0.5, 0.3], [0.3, 0.4]], [[0.2, -0.05], [-0.05, 0.1]], [[0.3, 0.0], [0.0, 0.05]]])
    return dl.GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5], [1.5, 1.0], [0.5, -1.5]], covs, labels=[0, 1, 1])
