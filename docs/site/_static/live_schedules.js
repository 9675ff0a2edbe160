/* dpm-lab reading site: the noise schedules, live in the page (no kernel, no network).
 *
 * The curves are closed forms: alpha_t, sigma_t and the log signal-to-noise ratio
 * lambda_t = log(alpha_t / sigma_t) of each schedule, from window.dpmLive.coeffs (live_mixture.js,
 * the same formulas as dpm_lab/schedules.py). tests/site/test_live_js.py holds
 * window.dpmLiveSchedules.curves against dpm_lab's Schedule.coeffs at many t.
 */
(function () {
  "use strict";
  const live = window.dpmLive;
  const COLOURS = { vp_linear: "#1f77b4", cosine: "#ff7f0e", rectified_flow: "#2ca02c" };
  const LAMBDA_RANGE = 8;   // lambda is drawn clipped to [-8, 8] (it runs to +-infinity at t = 0 and 1)

  function lambdaOf(co) {
    if (co.alpha > 0 && co.sigma > 0) return Math.log(co.alpha / co.sigma);
    return null;                                      // +-infinity: no finite log-SNR at the ends
  }

  // the curve data of one schedule at the times ts: [{t, alpha, sigma, lambda}]
  function curves(name, ts) {
    return ts.map((t) => {
      const co = live.coeffs(name, t);
      return { t, alpha: co.alpha, sigma: co.sigma, lambda: lambdaOf(co) };
    });
  }

  function draw(root) {
    const [select, slider] = root.querySelectorAll("select, input");
    const what = select.value, t0 = Number(slider.value);
    const canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, pad = 36;
    const lo = what === "lambda" ? -LAMBDA_RANGE : 0, hi = what === "lambda" ? LAMBDA_RANGE : 1;
    const X = (t) => pad + t * (W - 2 * pad);
    const Y = (v) => H - pad - ((Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * (H - 2 * pad);
    ctx.clearRect(0, 0, W, H);
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1;
    ctx.strokeRect(pad, pad, W - 2 * pad, H - 2 * pad);
    ctx.fillStyle = "#444"; ctx.font = "12px sans-serif";
    ctx.fillText("t = 0 (data)", pad, H - 12); ctx.fillText("t = 1 (noise)", W - pad - 70, H - 12);
    ctx.fillText(String(hi), 4, pad + 4); ctx.fillText(String(lo), 4, H - pad);
    const ts = Array.from({ length: 201 }, (_, i) => i / 200);
    const lines = [];
    for (const name of live.schedules) {
      const rows = curves(name, ts);
      const keys = what === "alpha_sigma" ? ["alpha", "sigma"] : ["lambda"];
      keys.forEach((key, j) => {
        ctx.strokeStyle = COLOURS[name]; ctx.lineWidth = 2; ctx.setLineDash(j ? [5, 4] : []);
        ctx.beginPath();
        let open = false;
        for (const r of rows) {
          const v = r[key];
          if (v === null) { open = false; continue; }
          if (open) ctx.lineTo(X(r.t), Y(v)); else { ctx.moveTo(X(r.t), Y(v)); open = true; }
        }
        ctx.stroke();
      });
      ctx.setLineDash([]);
      const here = curves(name, [t0])[0];
      lines.push(`${live.labels[name]}: alpha_t = ${here.alpha.toFixed(4)}, sigma_t = ${here.sigma.toFixed(4)}, ` +
                 `lambda_t = ${here.lambda === null ? (here.sigma > 0 ? "-inf" : "+inf") : here.lambda.toFixed(3)}`);
    }
    ctx.strokeStyle = "#000"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(t0), pad); ctx.lineTo(X(t0), H - pad); ctx.stroke();
    root.querySelector(".dpm-live-readout").textContent = `t = ${t0.toFixed(2)}\n` + lines.join("\n");
    root.dataset.drawn = String(Number(root.dataset.drawn || 0) + 1);
  }

  function mount(root) {
    const legend = live.schedules.map((n) => `<span style="color:${COLOURS[n]}">&#9632; ${live.labels[n]}</span>`).join(" ");
    root.innerHTML = `
      <div class="dpm-live-controls">
        <label>show <select><option value="alpha_sigma">alpha_t (solid) and sigma_t (dashed)</option>
          <option value="lambda">log-SNR lambda_t (clipped to +-${LAMBDA_RANGE})</option></select></label>
        <label>t <input type="range" min="0" max="1" step="0.01" value="0.5"></label>
      </div>
      <div class="dpm-live-legend">${legend}</div>
      <canvas width="520" height="320" aria-label="schedule curves"></canvas>
      <pre class="dpm-live-readout"></pre>`;
    root.querySelectorAll("select, input").forEach((el) => el.addEventListener("input", () => draw(root)));
    draw(root);
  }

  window.dpmLiveSchedules = { curves, draw };
  document.querySelectorAll(".dpm-live-schedules").forEach(mount);
})();
