/* dpm-lab reading site: the noised eight-Gaussians mixture, live in the page (no kernel, no network).
 *
 * Everything drawn is closed form, the same formulas as dpm_lab (schedules.py, gmm.py), in float64:
 *   x_t = alpha_t x0 + sigma_t eps,  x0 ~ sum_k w_k N(mu_k, s^2 I)
 *   p_t(x) = sum_k w_k N(x; alpha_t mu_k, c_k I),  c_k = alpha_t^2 s^2 + sigma_t^2
 *   r_k(x) = p(k | x_t = x),  score* = -sum_k r_k (x - alpha_t mu_k) / c_k
 *   x0*    = sum_k r_k [mu_k + alpha_t s^2 (x - alpha_t mu_k) / c_k]
 *   v*     = alpha_t' x0* + (sigma_t^2)'/2 sum_k r_k (x - alpha_t mu_k) / c_k   (the PF-ODE drift)
 * tests/site/test_site.py holds window.dpmLive.fields against dpm_lab at many (t, x).
 */
(function () {
  "use strict";

  // --- schedules (dpm_lab.schedules: VPLinear(0.1, 20), Cosine(0.008), RectifiedFlow) -----------
  const SCHEDULES = {
    vp_linear: {
      label: "VP linear (beta 0.1 to 20)",
      coeffs(t) {
        const bmin = 0.1, bmax = 20.0;
        const beta = bmin + t * (bmax - bmin), B = bmin * t + 0.5 * (bmax - bmin) * t * t;
        const alpha = Math.exp(-0.5 * B), sigma = Math.sqrt(-Math.expm1(-B));
        return { alpha, sigma, d_alpha: -0.5 * beta * alpha, d_sigma2: beta * Math.exp(-B) };
      },
    },
    cosine: {
      label: "cosine (offset 0.008)",
      coeffs(t) {
        const s = 0.008, c = Math.cos((s / (1 + s)) * Math.PI / 2);
        const phase = ((t + s) / (1 + s)) * Math.PI / 2;
        const alpha = t >= 1 ? 0 : Math.min(1, Math.max(0, Math.cos(phase) / c));
        const sigma = Math.sqrt(Math.max(0, 1 - alpha * alpha));
        const d_alpha = (-Math.sin(phase) / c) * Math.PI / (2 * (1 + s));
        return { alpha, sigma, d_alpha, d_sigma2: -2 * alpha * d_alpha };
      },
    },
    rectified_flow: {
      label: "rectified flow (alpha = 1 - t, sigma = t)",
      coeffs(t) { return { alpha: 1 - t, sigma: t, d_alpha: -1, d_sigma2: 2 * t }; },
    },
  };

  // --- the mixture (dpm_lab.datasets.eight_gaussians_mixture(radius=2, std=0.2)) ---------------
  const RADIUS = 2.0, STD = 0.2, K = 8;
  const MEANS = Array.from({ length: K }, (_, k) => [RADIUS * Math.cos((2 * Math.PI * k) / K),
                                                      RADIUS * Math.sin((2 * Math.PI * k) / K)]);
  const LOG_W = Math.log(1 / K);

  function coeffs(name, t) {
    const sched = SCHEDULES[name];
    if (!sched) throw new Error(`schedule must be one of ${Object.keys(SCHEDULES)}, got ${name}`);
    if (!(t >= 0 && t <= 1)) throw new Error(`t must lie in [0, 1], got ${t}`);
    return sched.coeffs(t);
  }

  // everything at one point (x, y), written into `out` (no allocation: the picture calls this 20k times)
  const logits = new Float64Array(K);
  function at(co, x, y, out) {
    const a = co.alpha, c = a * a * STD * STD + co.sigma * co.sigma;   // the same c_t for every k
    let m = -Infinity;
    for (let k = 0; k < K; k++) {
      const dx = x - a * MEANS[k][0], dy = y - a * MEANS[k][1];
      logits[k] = LOG_W - (dx * dx + dy * dy) / (2 * c) - Math.log(2 * Math.PI * c);
      if (logits[k] > m) m = logits[k];
    }
    let z = 0;
    for (let k = 0; k < K; k++) z += Math.exp(logits[k] - m);
    let cx = 0, cy = 0, mx = 0, my = 0;                            // sum r (x - a mu)/c, sum r mu
    for (let k = 0; k < K; k++) {
      const r = Math.exp(logits[k] - m) / z;
      cx += (r * (x - a * MEANS[k][0])) / c; cy += (r * (y - a * MEANS[k][1])) / c;
      mx += r * MEANS[k][0]; my += r * MEANS[k][1];
    }
    out.logp = m + Math.log(z);
    out.x0x = mx + a * STD * STD * cx; out.x0y = my + a * STD * STD * cy;
    out.sx = -cx; out.sy = -cy;
    out.vx = co.d_alpha * out.x0x + 0.5 * co.d_sigma2 * cx;
    out.vy = co.d_alpha * out.x0y + 0.5 * co.d_sigma2 * cy;
    return out;
  }

  // exact log p_t, x0*, score*, v* at points xs = [[x, y], ...] (what the site's test reads)
  function fields(name, t, xs) {
    const co = coeffs(name, t), o = {};
    const logp = [], x0 = [], score = [], velocity = [];
    for (const [x, y] of xs) {
      at(co, x, y, o);
      logp.push(o.logp); x0.push([o.x0x, o.x0y]); score.push([o.sx, o.sy]); velocity.push([o.vx, o.vy]);
    }
    return { alpha: co.alpha, sigma: co.sigma, d_alpha: co.d_alpha, d_sigma2: co.d_sigma2, logp, x0, score, velocity };
  }

  // --- drawing ------------------------------------------------------------------------------
  const LIM = 3.5, GRID = 140, ARROWS = 15;
  const off = document.createElement("canvas");                  // the density at grid resolution

  function draw(root) {
    const name = root.querySelector("select").value;
    const t = Number(root.querySelector("input[type=range]").value);
    const showArrows = root.querySelector("input[type=checkbox]").checked;
    const canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height;
    const co = coeffs(name, t), o = {}, dens = new Float64Array(GRID * GRID);
    let top = 0;
    for (let j = 0; j < GRID; j++) for (let i = 0; i < GRID; i++) {
      const d = Math.exp(at(co, -LIM + ((i + 0.5) * 2 * LIM) / GRID, LIM - ((j + 0.5) * 2 * LIM) / GRID, o).logp);
      dens[j * GRID + i] = d;
      if (d > top) top = d;
    }
    const img = ctx.createImageData(GRID, GRID);
    for (let n = 0; n < dens.length; n++) {                          // white -> dark blue
      const u = Math.sqrt(dens[n] / top);
      img.data[4 * n] = 255 - 220 * u; img.data[4 * n + 1] = 255 - 175 * u;
      img.data[4 * n + 2] = 255 - 95 * u; img.data[4 * n + 3] = 255;
    }
    off.width = off.height = GRID;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(off, 0, 0, W, H);
    if (showArrows) {
      const ap = [];
      for (let j = 0; j < ARROWS; j++) for (let i = 0; i < ARROWS; i++)
        ap.push([-LIM + ((i + 0.5) * 2 * LIM) / ARROWS, LIM - ((j + 0.5) * 2 * LIM) / ARROWS]);
      const v = fields(name, t, ap).velocity;
      const vmax = Math.max(1e-12, ...v.map(([a, b]) => Math.hypot(a, b)));
      const cell = W / ARROWS;
      ctx.strokeStyle = "#c0392b"; ctx.fillStyle = "#c0392b"; ctx.lineWidth = 1.3;
      ap.forEach(([x, y], n) => {
        // the reverse-time direction -v (noise to data), scaled so that the longest fills a cell
        const [vx, vy] = v[n], len = (0.9 * cell * Math.hypot(vx, vy)) / vmax;
        if (len < 0.5) return;
        const px = ((x + LIM) / (2 * LIM)) * W, py = ((LIM - y) / (2 * LIM)) * H;
        const ux = -vx / Math.hypot(vx, vy), uy = vy / Math.hypot(vx, vy);
        const qx = px + ux * len, qy = py + uy * len;
        ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(qx, qy); ctx.stroke();
        ctx.beginPath(); ctx.moveTo(qx, qy);
        ctx.lineTo(qx - 4 * ux + 2.5 * uy, qy - 4 * uy - 2.5 * ux);
        ctx.lineTo(qx - 4 * ux - 2.5 * uy, qy - 4 * uy + 2.5 * ux); ctx.closePath(); ctx.fill();
      });
    }
    const lam = co.sigma > 0 && co.alpha > 0 ? Math.log(co.alpha / co.sigma).toFixed(2) : (co.sigma > 0 ? "-inf" : "+inf");
    root.querySelector(".dpm-live-readout").textContent =
      `t = ${t.toFixed(2)}   alpha_t = ${co.alpha.toFixed(4)}   sigma_t = ${co.sigma.toFixed(4)}   ` +
      `log-SNR lambda_t = ${lam}`;
    root.dataset.drawn = String(Number(root.dataset.drawn || 0) + 1);
  }

  function mount(root) {
    const opts = Object.entries(SCHEDULES).map(([k, s]) => `<option value="${k}">${s.label}</option>`).join("");
    root.innerHTML = `
      <div class="dpm-live-controls">
        <label>schedule <select>${opts}</select></label>
        <label>t <input type="range" min="0" max="1" step="0.01" value="0.15"></label>
        <label><input type="checkbox" checked> arrows: -v*, the way back to the data</label>
      </div>
      <canvas width="420" height="420" aria-label="density of x_t"></canvas>
      <pre class="dpm-live-readout"></pre>`;
    root.querySelectorAll("select, input").forEach((el) => el.addEventListener("input", () => draw(root)));
    draw(root);
  }

  window.dpmLive = { fields, coeffs, schedules: Object.keys(SCHEDULES), labels: Object.fromEntries(
    Object.entries(SCHEDULES).map(([k, s]) => [k, s.label])), draw };
  document.querySelectorAll(".dpm-live-mixture").forEach(mount);
})();
