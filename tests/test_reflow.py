"""dpm_lab.reflow: straightness and chord/arc on paths with known answers, crossings against the OT coupling,
couplings from an exact flow map, the paired CFM loss, and the book's reflow facts on the exact straight case."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import reflow

D64 = torch.float64


def _line_path(a, b, n=16):
    s = torch.linspace(0, 1, n + 1, dtype=D64)[:, None, None]
    return (1 - s) * a + s * b


def test_straight_paths_have_zero_straightness_and_unit_chord_arc():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, 2, generator=g, dtype=D64), torch.randn(20, 2, generator=g, dtype=D64)
    path = _line_path(a, b)
    assert reflow.straightness(path) < 1e-24 and abs(reflow.chord_arc(path) - 1) < 1e-12


def test_straightness_of_a_half_circle_matches_closed_form():
    # y(s) = (cos(pi s), sin(pi s)): chord (-2, 0), speed pi (-sin, cos); S = int |chord - y'|^2 = pi^2 + 4 - 8 * 2/pi * ...
    # exactly: |y'|^2 = pi^2, |chord|^2 = 4, <chord, y'> averages to chord . (y1 - y0) = 4, so S = pi^2 - 4
    n = 4000
    s = torch.linspace(0, 1, n + 1, dtype=D64)
    path = torch.stack([torch.cos(math.pi * s), torch.sin(math.pi * s)], -1)[:, None, :]
    assert abs(reflow.straightness(path) - (math.pi ** 2 - 4)) < 1e-5
    assert abs(reflow.chord_arc(path) - 2 / math.pi) < 1e-6
    assert abs(reflow.straightness(path.flip(0)) - (math.pi ** 2 - 4)) < 1e-5     # direction does not matter


def test_crossings_one_dimensional_meaning():
    a = torch.tensor([[0.0], [1.0], [2.0]], dtype=D64)
    b = torch.tensor([[2.0], [1.5], [0.0]], dtype=D64)          # every pair swaps order: all three cross
    assert reflow.crossings(a, b) == 1.0
    assert reflow.crossings(a, a + 1) == 0.0


def test_couple_with_exact_mixture_follows_the_reference_flow_map():
    mix = dl.GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], stds=[0.3, 0.4])
    model = mix.model(dl.RectifiedFlow())
    x1 = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=D64)
    _, x0 = reflow.couple(model, x1, 64)
    assert torch.allclose(x0, mix.flow_map(x1, 1.0, 0.0, dl.RectifiedFlow()), atol=1e-5)


def test_paired_cfm_target_is_source_minus_target():
    class Zero(torch.nn.Module, dl.Model):
        schedule, kind = dl.RectifiedFlow(), "velocity"

        def raw(self, x, t, c=None):
            return torch.zeros_like(x)

    x0, src = torch.randn(5, 2, dtype=D64), torch.randn(5, 2, dtype=D64)
    loss = reflow.paired_cfm()(Zero(), x0, src, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(loss, ((src - x0) ** 2).mean(1))
    with pytest.raises(ValueError, match="paired source"):
        reflow.paired_cfm()(Zero(), x0, None)


def test_rectify_of_the_exact_straight_flow_is_a_fixed_point():
    # N(0, 1) -> N(0, 1) in 1-D: the marginal velocity of the independent coupling is V'/(2V) x, and its flow map
    # at t = 0 is x1 itself (z_t = z_1 sqrt((1-t)^2 + t^2)); the rectified coupling pairs x with x: cost 0 <= 2
    mix = dl.GaussianMixture([1.0], [[0.0]], stds=[1.0])
    model = mix.model(dl.RectifiedFlow())
    x1 = torch.randn(400, 1, generator=torch.Generator().manual_seed(2), dtype=D64)
    path = reflow.flow_path(model, x1, 64)
    assert torch.allclose(path[-1], x1, atol=1e-8)
    mid = path[32]                                                        # t = 1/2: z_1 / sqrt(2)
    assert torch.allclose(mid, x1 / math.sqrt(2), atol=1e-8)
    assert dl.ot.transport_cost(path[0], path[-1]) < 1e-12
    assert reflow.straightness(path) > 0.1                               # the marginal path itself is curved


@pytest.mark.slow
def test_zoo_reflow_rounds_straighten_and_keep_cost():
    from dpm_lab.recipes import flows
    xs = flows.ring_source(500, generator=torch.Generator().manual_seed(3))
    S, cost, cross = [], [], []
    for name in flows.RING_ROUNDS:
        path = reflow.flow_path(dl.zoo.load(name), xs, 32)
        S.append(reflow.straightness(path))
        cost.append(dl.ot.transport_cost(path[0], path[-1]))
        cross.append(reflow.crossings(path[0, :300], path[-1, :300]))
    assert S[0] > 10 * S[1] > 0 and S[1] > S[2]
    # reflow does not increase the transport cost (property I); 0.02 covers training error of the rounds
    assert cost[1] <= cost[0] + 0.02 and cost[2] <= cost[1] + 0.02
    assert cross[0] < 0.02 and cross[2] <= cross[0]


def test_bad_input_raises():
    with pytest.raises(ValueError, match="path"):
        reflow.straightness(torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="NaN"):
        reflow.straightness(torch.full((3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="same shape"):
        reflow.crossings(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="two pairs"):
        reflow.crossings(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="n_steps"):
        reflow.flow_grid(dl.GaussianMixture([1.0], [[0.0]], stds=[1.0]).model(dl.RectifiedFlow()), 0)
