"""Tests of dpm_lab.widgets: the Explorer base (cache, controls, figure) and each explorer's update(),
which runs headless and returns the exact values."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dpm_lab as dl  # noqa: E402

widgets = dl.widgets


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class Square(widgets.Explorer):
    """A minimal explorer: x -> x^2 (computed), colour (drawing only)."""

    compute_keys = ("x",)
    figsize = (3.0, 2.0)

    def _make_controls(self):
        return {"x": self._W.FloatSlider(value=1.0, min=-2.0, max=2.0, step=0.5),
                "colour": self._W.Dropdown(options=["C0", "C1"], value="C0")}

    def compute(self, x):
        self.computed = getattr(self, "computed", 0) + 1
        return {"x": x, "y": x * x}

    def draw(self, data, values):
        self.fig.axes[0].plot([data["x"]], [data["y"]], "o", color=values["colour"])

    def _make_figure(self):
        return plt.subplots(figsize=self.figsize)[0]


def test_explorer_base_caches_on_compute_keys():
    ex = Square(x=0.5)
    assert ex.values == {"x": 0.5, "colour": "C0"}
    assert ex.update() == {"x": 0.5, "y": 0.25}
    assert ex.update(x=-1.5)["y"] == 2.25 and ex.controls["x"].value == -1.5
    ex.update(colour="C1")                         # not a compute key: served from the cache
    ex.update(x=0.5)
    assert (ex.computed, ex.misses, ex.hits) == (2, 2, 2)
    with pytest.raises(ValueError, match="unknown control 'y'; controls: x, colour"):
        ex.update(y=1.0)
    with pytest.raises(ValueError, match="unknown control"):
        Square(z=1.0)


def test_explorer_base_figure_is_reused_and_matches_the_controls():
    ex = Square()
    fig = ex.figure()
    size = tuple(fig.get_size_inches())
    ex.update(x=2.0, colour="C1")
    assert ex.figure() is fig and tuple(fig.get_size_inches()) == size
    (line,) = fig.axes[0].lines                    # the old point was cleared
    assert tuple(line.get_xydata()[0]) == (2.0, 4.0) and line.get_color() == "C1"


def test_explorer_base_one_path_from_a_change_to_the_picture():
    import ipywidgets

    ex = Square()
    box = ex.widget()
    assert isinstance(box, ipywidgets.VBox) and list(box.children[0].children) == list(ex.controls.values())
    image = box.children[-1]
    assert isinstance(image, ipywidgets.Image) and image.value == ex.png()
    misses = ex.misses
    ex.controls["x"].value = -2.0                  # as a learner would: the observer recomputes and redraws
    assert ex.misses == misses + 1 and tuple(ex.fig.axes[0].lines[0].get_xydata()[0]) == (-2.0, 4.0)
    shown = image.value
    ex.update(x=1.5)                               # a cell: the same path, controls and picture move together
    assert ex.controls["x"].value == 1.5 and tuple(ex.fig.axes[0].lines[0].get_xydata()[0]) == (1.5, 2.25)
    assert image.value != shown and image.value == ex.png()
    ex.set_value("colour", "C1")
    assert ex.fig.axes[0].lines[0].get_color() == "C1"


def test_explorer_base_initial_values_are_drawn():
    ex = Square(x=-0.5, colour="C1")
    ex.widget()
    (line,) = ex.fig.axes[0].lines
    assert tuple(line.get_xydata()[0]) == (-0.5, 0.25) and line.get_color() == "C1"


class Picky(Square):
    """Square with an impossible selection (x = 0) and a bug (x = 2)."""

    def compute(self, x):
        if x == 0.0:
            raise widgets.InvalidSelection("x = 0: nothing to show, move x")
        if x == 2.0:
            raise ZeroDivisionError("a bug")
        return super().compute(x)


def test_explorer_base_impossible_selection_is_a_message_in_the_widget():
    ex = Picky()
    box = ex.widget()
    before = ex.png()
    assert ex.update(x=0.0) is None                # nothing raised
    assert ex.message == "x = 0: nothing to show, move x"
    texts = [t.get_text() for t in ex.fig.texts]
    assert any("x = 0: nothing to show" in t for t in texts)
    assert not any(ax.get_visible() for ax in ex.fig.axes)
    assert box.children[-1].value != before and "x = 0: nothing to show" in box.children[1].value
    ex.controls["x"].value = 0.5                   # a good selection again: the picture comes back
    assert ex.message is None and ex.fig.texts == [] and all(ax.get_visible() for ax in ex.fig.axes)
    assert tuple(ex.fig.axes[0].lines[0].get_xydata()[0]) == (0.5, 0.25)


def test_explorer_base_other_errors_are_shown_in_the_widget(capsys):
    ex = Picky()
    box = ex.widget()
    ex.controls["x"].value = 2.0                   # a browser change: shown, never raised or printed
    assert ex.message == "ZeroDivisionError: a bug" and "ZeroDivisionError: a bug" in box.children[1].value
    assert "ZeroDivisionError" in ex.last_traceback
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    with pytest.raises(ZeroDivisionError):         # a cell's call still stops the cell
        ex.update(x=2.0)
    assert ex.update(x=1.0) == {"x": 1.0, "y": 1.0} and ex.message is None


def test_explorer_base_figure_keeps_its_pixel_size():
    ex = Square()
    ex.widget()
    sizes = set()
    for x in (-2.0, -1.0, 0.0, 1.0, 2.0, 0.5):
        ex.update(x=x)
        png = ex.png()
        sizes.add(_png_size(png))
    assert sizes == {ex.pixel_size} == {(270, 180)}


def _png_size(png):
    import struct

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_explorer_base_display_bundle_has_the_widget_and_its_picture():
    import base64

    ex = Square()
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget().model_id
    png = base64.b64decode(bundle["image/png"])
    assert _png_size(png) == ex.pixel_size
    ex.update(x=-1.0)
    assert base64.b64decode(ex._repr_mimebundle_()["image/png"]) != png
    ex.update(x=1.0)
    assert base64.b64decode(ex._repr_mimebundle_()["image/png"]) == png


def test_package_face_names_each_explorer_by_its_file():
    from dpm_lab.widgets import base, field, schedule, trajectory

    assert widgets.Explorer is base.Explorer
    assert widgets.ScheduleExplorer is schedule.ScheduleExplorer and widgets.digit_image is schedule.digit_image
    assert widgets.FieldExplorer is field.FieldExplorer and widgets.TrajectoryExplorer is trajectory.TrajectoryExplorer
    for name in ("ScheduleExplorer", "FieldExplorer", "TrajectoryExplorer"):
        assert issubclass(getattr(widgets, name), widgets.Explorer)


def test_digit_image_is_the_loaders_image():
    images, _ = dl.images.load_digits8("all", dtype=torch.float64)
    img = widgets.digit_image(5)
    assert img.shape == (8, 8) and img.dtype == torch.float64 and torch.equal(img, images[5, 0])
    assert -1.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_schedule_explorer_matches_schedules():
    ex = widgets.ScheduleExplorer(n=64)
    d = ex.update(t=0.5, schedules=("vp", "cosine", "ve"))
    for name, sch in (("vp", dl.VPLinear()), ("cosine", dl.Cosine()), ("ve", dl.VEGeometric())):
        assert d["alpha_t"][name] == pytest.approx(float(sch.alpha(0.5)), abs=1e-12)
        assert d["sigma_t"][name] == pytest.approx(float(sch.sigma(0.5)), abs=1e-12)
        assert d["lam_t"][name] == pytest.approx(float(sch.lam(0.5)), abs=1e-12)
    sch = dl.VPLinear()
    assert torch.allclose(d["x_t"], sch.alpha(0.5) * ex.x0 + sch.sigma(0.5) * ex.eps)
    assert torch.allclose(d["image_t"], sch.alpha(0.5) * ex.image + sch.sigma(0.5) * ex.image_eps)
    assert ex.controls["t"].value == 0.5          # update moves the control
    assert torch.equal(ex.image, widgets.digit_image(0))
    g = torch.Generator().manual_seed(0)            # the noise is seeded: data first, then eps, then the image's
    dl.datasets.sample_2d("eight_gaussians", 64, generator=g, dtype=torch.float64)
    assert torch.equal(ex.eps, torch.randn(64, 2, generator=g, dtype=torch.float64))
    assert torch.equal(ex.image_eps, torch.randn(8, 8, generator=g, dtype=torch.float64))


def test_schedule_explorer_own_schedules_data_and_image():
    sched = dl.DiscreteSchedule.linear(100, 1e-3, 0.1)
    data, image = torch.zeros(10, 2), torch.ones(1, 4, 4)
    ex = widgets.ScheduleExplorer(data, image, schedules={"ddpm": sched, "vp": dl.VPLinear()}, t=0.4)
    assert ex.controls["schedules"].options == ("ddpm", "vp") and ex.values["schedules"] == ("ddpm", "vp")
    d = ex.update()
    assert d["alpha_t"]["ddpm"] == pytest.approx(float(sched.alpha(0.4)), abs=1e-12)
    assert torch.allclose(d["x_t"], sched.sigma(0.4) * ex.eps)          # zero data: pure noise
    assert torch.allclose(d["image_t"], sched.alpha(0.4) + sched.sigma(0.4) * ex.image_eps)
    assert ex.image.shape == (4, 4)
    assert ex.update(schedules=()) is None          # an impossible selection: a message, nothing raised
    assert "No schedule chosen" in ex.message


def test_schedule_explorer_t0_is_data_and_cache():
    ex = widgets.ScheduleExplorer(n=32)
    d = ex.update(t=0.0, schedules=("flow",))
    assert torch.equal(d["x_t"], ex.x0)
    misses = ex.misses
    ex.update(curve="snr")                         # drawing-only control: no recompute
    ex.update(t=0.0)
    assert ex.misses == misses and ex.hits >= 2
    fig = ex.figure()
    assert len(fig.axes) >= 3


def test_explorer_rejects_unknown_control():
    ex = widgets.ScheduleExplorer(n=16)
    with pytest.raises(ValueError, match="unknown control"):
        ex.update(tt=0.3)


def test_explorer_cache_is_bounded():
    ex = widgets.ScheduleExplorer(n=16)
    ex.cache_size = 3
    for t in (0.1, 0.2, 0.3, 0.4, 0.5):
        ex.update(t=t)
    assert len(ex._cache) == 3


def test_field_explorer_exact_fields():
    gmm = dl.datasets.eight_gaussians_mixture()
    ex = widgets.FieldExplorer(gmm, n=7, n_density=20)
    d = ex.update(t=0.4, schedule="cosine")
    sch = dl.Cosine()
    for kind in ("x0", "eps", "score", "velocity"):
        assert torch.allclose(d["exact"][kind], gmm.predict(d["points"], 0.4, sch, kind))
    assert torch.allclose(d["log_p"].flatten(), gmm.log_prob_t(dl.viz.grid_points(3.0, 20)[2], 0.4, sch))
    ex.figure()


def test_field_explorer_learned_row_is_exact_model():
    gmm = dl.datasets.eight_gaussians_mixture()
    sch = dl.VPLinear()
    ex = widgets.FieldExplorer(gmm, model=gmm.model(sch), n=5, n_density=10)
    d = ex.update(t=0.5)
    assert max(d["rmse"].values()) < 1e-5          # the exact model IS the exact field
    assert ex.controls["schedule"].layout.display == "none"   # one option: hidden, not a disabled dropdown
    assert len(ex.figure().axes) == 8


def test_trajectory_explorer_first_step_and_prior():
    gmm = dl.datasets.eight_gaussians_mixture()
    sch = dl.VPLinear()
    ex = widgets.TrajectoryExplorer(gmm, schedule=sch, n_samples=32)
    d = ex.update(sampler="ddim", nfe=5, eta=0.0, seed=3)
    traj, times = d["trajectory"], d["times"]
    assert traj.shape == (6, 32, 2) and torch.allclose(times, dl.time_grid(sch, 5))
    x1 = sch.sample_prior((32, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(traj[0], x1)
    t, s = float(times[0]), float(times[1])
    step = sch.alpha(s) * gmm.x0(x1, t, sch) + sch.sigma(s) * gmm.eps(x1, t, sch)   # DDIM, eta = 0
    assert torch.allclose(traj[1], step, atol=1e-10)


def test_trajectory_explorer_samplers_and_scrubber():
    gmm = dl.datasets.eight_gaussians_mixture()
    ex = widgets.TrajectoryExplorer(gmm, n_samples=64)
    good = ex.update(sampler="ddim", nfe=30, seed=0)["mean_log_p"]
    bad = ex.update(sampler="ddim", nfe=2, seed=0)["mean_log_p"]
    assert good > bad and good > -2.5
    d1 = ex.update(sampler="ddpm", nfe=20, seed=1)
    d2 = ex.update(sampler="ddpm", nfe=20, seed=2)
    assert not torch.allclose(d1["final"], d2["final"])
    euler = ex.update(sampler="euler", nfe=40, seed=0)
    assert euler["mean_log_p"] > -3.0
    misses = ex.misses
    ex.update(step=3)                               # scrubbing never recomputes
    assert ex.misses == misses
    ex.figure()
    with pytest.raises(ValueError, match="unknown method 'rk5'"):
        ex.compute("rk5", 10, 0.0, 0)


def test_widget_builds_vbox():
    import ipywidgets

    ex = widgets.ScheduleExplorer(n=16)
    box = ex.widget()
    assert isinstance(box, ipywidgets.VBox)
    ex.set_value("t", 0.7)                          # a control change redraws without error
    assert ex.values["t"] == 0.7


def test_trajectory_explorer_package_methods():
    pytest.importorskip("dpm_lab.samplers")
    ex = widgets.TrajectoryExplorer(n_samples=32)
    if "heun" not in ex.controls["sampler"].options:
        pytest.skip("heun not registered")
    d = ex.update(sampler="heun", nfe=20, seed=0)
    assert d["trajectory"].shape == (11, 32, 2) and d["mean_log_p"] > -3.0


# -- the drawn data is the exact data ---------------------------------------------------------------

def test_schedule_explorer_draws_the_exact_curves_and_points():
    ex = widgets.ScheduleExplorer(n=64)
    d = ex.update(t=0.5, schedules=("vp", "ve"), curve="alpha_sigma")
    tc = ex.curve_times("alpha_sigma")
    t = torch.from_numpy(tc)
    for name, sch in (("vp", dl.VPLinear()), ("ve", dl.VEGeometric())):
        la, ls = ex._lines[name]
        assert la.get_visible() and ls.get_visible()
        assert np.array_equal(la.get_xdata(), tc) and np.allclose(la.get_ydata(), sch.alpha(t).numpy(), atol=1e-14)
        assert np.allclose(ls.get_ydata(), sch.sigma(t).numpy(), atol=1e-14)
    assert not any(line.get_visible() for line in ex._lines["cosine"])
    assert list(ex._tline.get_xdata()) == [0.5, 0.5]
    dots = ex._dots.get_offsets()
    want = [(0.5, d["alpha_t"]["vp"]), (0.5, d["sigma_t"]["vp"]), (0.5, d["alpha_t"]["ve"]), (0.5, d["sigma_t"]["ve"])]
    assert np.allclose(dots, want, atol=1e-14)
    vp = dl.VPLinear()
    assert np.allclose(ex._points.get_offsets(), (vp.alpha(0.5) * ex.x0 + vp.sigma(0.5) * ex.eps).numpy(), atol=1e-14)
    assert np.allclose(ex._im.get_array(), (vp.alpha(0.5) * ex.image + vp.sigma(0.5) * ex.image_eps).numpy())
    ex.update(curve="snr", schedules=("cosine",))
    ts = torch.from_numpy(ex.curve_times("snr"))
    la, ls = ex._lines["cosine"]
    assert la.get_visible() and not ls.get_visible() and ex.fig.axes[0].get_yscale() == "log"
    assert np.allclose(la.get_ydata(), torch.exp(2 * dl.Cosine().lam(ts)).numpy(), rtol=1e-12)
    ex.update(curve="lam")
    assert np.allclose(la.get_ydata(), dl.Cosine().lam(ts).numpy(), atol=1e-12)
    assert ex._dots.get_offsets().tolist() == [[0.5, pytest.approx(float(dl.Cosine().lam(0.5)), abs=1e-12)]]


def test_schedule_explorer_no_schedule_is_a_message():
    ex = widgets.ScheduleExplorer(n=16)
    ex.widget()
    assert ex.update(schedules=()) is None and "No schedule chosen" in ex.message
    assert any("No schedule chosen" in t.get_text() for t in ex.fig.texts)
    ex.controls["schedules"].value = ("flow",)     # choosing one brings the picture back
    assert ex.message is None and ex._lines["flow"][0].get_visible()


def test_field_explorer_draws_the_exact_fields():
    gmm = dl.datasets.eight_gaussians_mixture()
    ex = widgets.FieldExplorer(gmm, n=7, n_density=20)
    d = ex.update(t=0.4, schedule="cosine", normalize=False)
    sch = dl.Cosine()
    for kind in widgets.FIELD_KINDS:
        q = ex.quivers["exact"][kind]
        f = gmm.predict(d["points"], 0.4, sch, kind).numpy()
        if kind == "x0":                            # the denoiser is drawn as the step x0* - x_t, from x_t
            f = f - d["points"].numpy()
        assert np.allclose(q.U.ravel(), f[:, 0]) and np.allclose(q.V.ravel(), f[:, 1])
    lp = gmm.log_prob_t(dl.viz.grid_points(3.0, 20)[2], 0.4, sch).reshape(20, 20).numpy()
    assert np.allclose(ex.images[0].get_array(), np.exp(lp - lp.max()))
    ex.update(normalize=True)                       # drawing only: unit arrows, same directions
    q = ex.quivers["exact"]["score"]
    f = gmm.score(d["points"], 0.4, sch).numpy()
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    ok = norm[:, 0] > 1e-6                          # the centre of symmetry has no direction
    assert ok.sum() >= 40
    assert np.allclose(np.stack([q.U.ravel(), q.V.ravel()], 1)[ok], (f / norm)[ok], atol=1e-9)


def test_field_explorer_learned_row_draws_the_models_fields():
    gmm = dl.datasets.eight_gaussians_mixture()
    sch = dl.VPLinear()
    model = gmm.model(sch)
    ex = widgets.FieldExplorer(gmm, model=model, n=5, n_density=10)
    d = ex.update(t=0.3, normalize=False)
    q = ex.quivers["learned"]["eps"]
    f = model.predict(d["points"].float(), 0.3, "eps").double().numpy()
    assert np.allclose(q.U.ravel(), f[:, 0]) and np.allclose(q.V.ravel(), f[:, 1])
    assert "rmse" in ex._notes["learned"]["eps"].get_text()


def test_trajectory_explorer_ranges_follow_the_sampler_and_nfe():
    ex = widgets.TrajectoryExplorer(n_samples=16, nfe=10)
    c = ex.controls
    assert c["step"].max == 10 and c["step"].value == 10      # a scrubber at the end: the last step
    ex.update(nfe=20)
    assert c["step"].max == 20 and c["step"].value == 20      # ... stays at the end
    ex.update(step=5)
    ex.update(nfe=30)
    assert c["step"].max == 30 and c["step"].value == 5        # a scrubbed step stays
    assert c["nfe"].max == 50 and widgets.TrajectoryExplorer(n_samples=4, nfe_max=80).controls["nfe"].max == 80
    ex.update(step=25)
    ex.update(nfe=12)
    assert c["step"].value == 12                               # ... unless past the new end
    ex.update(sampler="heun")                                  # two evaluations per step
    assert (c["nfe"].min, c["nfe"].step, c["nfe"].value) == (2, 2, 12) and c["step"].max == 6
    assert c["eta"].disabled
    d = ex.update(nfe=9)
    assert c["nfe"].value == 8 and d["trajectory"].shape[0] == 5 and d["nfe_used"] == 8   # at most 9
    ex.update(sampler="ddim")
    assert not c["eta"].disabled and (c["nfe"].min, c["nfe"].step) == (1, 1)
    misses = ex.misses
    ex.update(sampler="euler", eta=0.5)                        # eta is ddim's: euler's run is shared
    ex.update(eta=0.0)
    assert ex.misses == misses + 1


def test_trajectory_explorer_draws_the_run():
    gmm = dl.datasets.eight_gaussians_mixture()
    sch = dl.VPLinear()
    ex = widgets.TrajectoryExplorer(gmm, schedule=sch, n_samples=32, n_show=8)
    d = ex.update(sampler="ddim", nfe=6, seed=2, step=3)
    traj = d["trajectory"].numpy()
    segs = ex._paths.get_segments()
    assert len(segs) == 8 and all(np.allclose(segs[i], traj[:4, i]) for i in range(8))
    assert np.allclose(ex._start.get_offsets(), traj[0, :8]) and np.allclose(ex._now.get_offsets(), traj[3, :8])
    assert np.allclose(ex._points.get_offsets(), traj[3])
    t = float(d["times"][3])
    lp = gmm.log_prob_t(dl.viz.grid_points(3.5, ex.N_DENSITY)[2], t, sch).numpy()
    assert np.allclose(ex._im.get_array(), np.exp(lp - lp.max()).reshape(ex.N_DENSITY, ex.N_DENSITY))
    assert "step 3/6" in ex._title1.get_text() and f"t = {t:.3f}" in ex._title1.get_text()
    ex.update(step=0)
    assert ex._paths.get_segments() == [] and np.allclose(ex._now.get_offsets(), traj[0, :8])


# -- the picture: size, display bundle, every control matters -------------------------------------

def _explorers():
    gmm = dl.datasets.eight_gaussians_mixture()
    return {"schedule": widgets.ScheduleExplorer(n=64),
            "field": widgets.FieldExplorer(gmm, n=7, n_density=20),
            "field+model": widgets.FieldExplorer(gmm, model=gmm.model(dl.VPLinear()), n=5, n_density=10),
            "trajectory": widgets.TrajectoryExplorer(gmm, n_samples=32)}


SWEEPS = {"schedule": [("t", [0.0, 0.4, 1.0]), ("curve", ["snr", "lam", "alpha_sigma"]),
                       ("schedules", [("ve",), ("vp", "edm"), ("trig", "flow", "cosine")])],
          "field": [("t", [0.02, 0.5, 1.0]), ("schedule", ["cosine", "flow", "ve", "edm", "vp"]),
                    ("normalize", [False, True])],
          "field+model": [("t", [0.02, 0.5, 1.0]), ("normalize", [False, True])],
          "trajectory": [("sampler", ["ddpm", "euler", "heun", "dpm_solver_2", "dpmpp_2m", "ddim"]),
                         ("nfe", [1, 2, 25, 50]), ("eta", [0.5, 1.0]), ("seed", [1, 2]), ("step", [0, 1, 50])]}


def test_every_control_changes_the_picture_and_the_size_stays():
    for name, ex in _explorers().items():
        ex.widget()
        size = _png_size(ex.png())
        assert size == ex.pixel_size, name
        for control, sweep in SWEEPS[name]:
            before = ex.png()
            for v in sweep:
                ex.controls[control].value = v                   # as in the browser
                assert ex.message is None, (name, control, v, ex.message)
                now = ex.png()
                assert now != before, f"{name}: {control} = {v!r} left the picture unchanged"
                assert _png_size(now) == size and ex.widget().children[-1].value == now
                before = now


def test_display_bundle_of_each_explorer_changes_with_a_control():
    import base64

    moves = {"schedule": {"t": 0.8}, "field": {"t": 0.8}, "field+model": {"normalize": False},
             "trajectory": {"step": 2}}
    for name, ex in _explorers().items():
        b1 = ex._repr_mimebundle_()
        assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/plain"} <= set(b1)
        ex.update(**moves[name])
        b2 = ex._repr_mimebundle_()
        assert b2["image/png"] != b1["image/png"], name
        assert _png_size(base64.b64decode(b2["image/png"])) == ex.pixel_size


def test_displayed_output_follows_a_cells_update(monkeypatch):
    import base64

    import IPython.display

    shown = []

    class Handle:
        def update(self, obj, raw=False):
            shown.append(obj)

    def display(obj, raw=False, display_id=None):
        shown.append(obj)
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    ex = Square()
    ex._ipython_display_()                         # what `ex` as a cell's last line does
    assert len(shown) == 1 and "application/vnd.jupyter.widget-view+json" in shown[0]
    ex.update(x=-1.0)                              # a later cell: the stored picture follows
    assert len(shown) == 2 and shown[1]["image/png"] != shown[0]["image/png"]
    assert base64.b64decode(shown[1]["image/png"]) == ex.png(compress_level=6)
    ex.controls["x"].value = 2.0                   # a browser change: only the live view moves
    assert len(shown) == 2


def test_update_names_the_control_of_a_bad_value():
    ex = Square()
    with pytest.raises(ValueError, match="control 'colour' cannot take 'C9'"):
        ex.update(colour="C9")
