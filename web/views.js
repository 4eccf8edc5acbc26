// The figures of a run, drawn on canvases as `tms plot` draws them (src/figures.rs): WᵀW of every
// instance with its bias b as a strip beside it (red positive, blue negative), the feature bars
// (‖W_i‖ per feature, coloured by how much feature i shares its direction with others) and the loss
// curves. Every canvas answers hovering with the value under the pointer.
//
// A run here is {model, features, hidden, instances: [{density, importance, w (m·n, row-major), b,
// curve: [[step, loss]]}]}.

// RdBu-like diverging colour of v clamped to [−1, 1]: blue, white, red.
function diverging(v) {
  const t = Math.max(-1, Math.min(1, Number.isFinite(v) ? v : 0));
  const [r, g, b] = t >= 0 ? [255, 255 - 200 * t, 255 - 220 * t] : [255 + 220 * t, 255 + 170 * t, 255];
  return `rgb(${r | 0},${g | 0},${b | 0})`;
}

// Superposition of feature i (the paper's Σ_{j≠i} (Ŵ_i · W_j)²): 0 black, ≥ 1 yellow.
function superpositionColour(s) {
  const t = Math.max(0, Math.min(1, s));
  return `rgb(${(40 + 215 * t) | 0},${(40 + 180 * t) | 0},${(60 - 40 * t) | 0})`;
}

const fmt = (v) => (Number.isFinite(v) ? v.toPrecision(4) : String(v));

// WᵀW and the column norms and superposition of one instance.
export function analyse(run, inst) {
  const { features: n, hidden: m } = run;
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += inst.w[k * n + i] * inst.w[k * n + j];
      gram[i * n + j] = s;
    }
  }
  const norms = Array.from({ length: n }, (_, i) => Math.sqrt(gram[i * n + i]));
  const superposition = norms.map((ni, i) => {
    if (!(ni > 1e-9)) return 0;
    let s = 0;
    for (let j = 0; j < n; j++) if (j !== i) s += (gram[i * n + j] / ni) ** 2;
    return s;
  });
  return { gram, norms, superposition };
}

// A canvas of css size w × h (sharp on high-density screens) with a hover function.
function canvas(parent, w, h, hover) {
  const c = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  c.width = w * ratio;
  c.height = h * ratio;
  c.style.width = `${w}px`;
  c.style.height = `${h}px`;
  parent.appendChild(c);
  const ctx = c.getContext("2d");
  ctx.scale(ratio, ratio);
  const tip = document.getElementById("tooltip");
  c.addEventListener("mousemove", (e) => {
    const r = c.getBoundingClientRect();
    const text = hover(e.clientX - r.left, e.clientY - r.top);
    tip.hidden = !text;
    if (text) {
      tip.textContent = text;
      tip.style.left = `${e.pageX + 12}px`;
      tip.style.top = `${e.pageY + 12}px`;
    }
  });
  c.addEventListener("mouseleave", () => (tip.hidden = true));
  return ctx;
}

function panel(parent, title) {
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  figure.appendChild(caption);
  parent.appendChild(figure);
  return figure;
}

// One WᵀW heat map with its b strip per instance.
export function drawWeights(parent, run) {
  parent.replaceChildren();
  const n = run.features;
  const cell = Math.max(2, Math.min(12, Math.floor(180 / n)));
  const size = cell * n;
  for (const inst of run.instances) {
    const { gram } = analyse(run, inst);
    const figure = panel(parent, `1 − S = ${inst.density}`);
    const gap = cell;
    const ctx = canvas(figure, size + gap + cell, size, (x, y) => {
      const i = Math.floor(y / cell), j = Math.floor(x / cell);
      if (i < 0 || i >= n) return null;
      if (j < n) return `WᵀW[${i}][${j}] = ${fmt(gram[i * n + j])}`;
      if (x >= size + gap) return `b[${i}] = ${fmt(inst.b[i])}`;
      return null;
    });
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        ctx.fillStyle = diverging(gram[i * n + j]);
        ctx.fillRect(j * cell, i * cell, cell, cell);
      }
      ctx.fillStyle = diverging(inst.b[i]);
      ctx.fillRect(size + gap, i * cell, cell, cell);
    }
  }
}

// Feature bars: ‖W_i‖ of every feature (most important first), coloured by superposition.
export function drawBars(parent, run) {
  parent.replaceChildren();
  const n = run.features;
  const bar = Math.max(2, Math.min(8, Math.floor(200 / n)));
  const width = 120;
  for (const inst of run.instances) {
    const { norms, superposition } = analyse(run, inst);
    const figure = panel(parent, `1 − S = ${inst.density}`);
    const scale = width / Math.max(1.2, ...norms.filter(Number.isFinite));
    const ctx = canvas(figure, width, bar * n, (x, y) => {
      const i = Math.floor(y / bar);
      return i >= 0 && i < n ? `feature ${i}: ‖W_i‖ = ${fmt(norms[i])}, superposition ${fmt(superposition[i])}` : null;
    });
    norms.forEach((v, i) => {
      ctx.fillStyle = superpositionColour(superposition[i]);
      ctx.fillRect(0, i * bar + 0.5, Math.max(0, v * scale), bar - 1);
    });
  }
}

// Loss curves of every instance, log-scaled loss against step; colour from dense (dark) to sparse.
export function drawLosses(parent, run) {
  parent.replaceChildren();
  const W = 560, H = 240, left = 56, bottom = 28, top = 8, right = 8;
  const curves = run.instances.map((inst) => inst.curve.filter(([, l]) => l > 0 && Number.isFinite(l)));
  const points = curves.flat();
  if (!points.length) return;
  const maxStep = Math.max(1, ...points.map(([s]) => s));
  const logs = points.map(([, l]) => Math.log10(l));
  const lo = Math.floor(Math.min(...logs)), hi = Math.ceil(Math.max(...logs));
  const X = (s) => left + ((W - left - right) * s) / maxStep;
  const Y = (l) => top + ((H - top - bottom) * (hi - Math.log10(l))) / Math.max(1, hi - lo);
  const colour = (i) => `hsl(${(250 * i) / Math.max(1, run.instances.length - 1)}, 70%, 45%)`;
  const figure = panel(parent, "training loss (log scale) against step");
  const ctx = canvas(figure, W, H, (x, y) => {
    let best = null;
    curves.forEach((curve, i) =>
      curve.forEach(([s, l]) => {
        const d = (X(s) - x) ** 2 + (Y(l) - y) ** 2;
        if (d < 100 && (!best || d < best.d)) best = { d, text: `1 − S = ${run.instances[i].density}, step ${s}: loss ${fmt(l)}` };
      }),
    );
    return best?.text ?? null;
  });
  ctx.strokeStyle = "#999";
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.strokeRect(left, top, W - left - right, H - top - bottom);
  for (let e = lo; e <= hi; e++) {
    ctx.fillText(`1e${e}`, 4, Y(10 ** e) + 4);
  }
  ctx.fillText("0", left - 3, H - 10);
  ctx.fillText(String(maxStep), W - right - 8 * String(maxStep).length, H - 10);
  curves.forEach((curve, i) => {
    ctx.strokeStyle = colour(i);
    ctx.beginPath();
    curve.forEach(([s, l], k) => (k ? ctx.lineTo(X(s), Y(l)) : ctx.moveTo(X(s), Y(l))));
    ctx.stroke();
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = run.instances.map((inst, i) => `<span style="color:${colour(i)}">■ ${inst.density}</span>`).join(" ");
  figure.appendChild(legend);
}

// Everything at once.
export function drawRun(run) {
  drawWeights(document.getElementById("weights"), run);
  drawBars(document.getElementById("bars"), run);
  drawLosses(document.getElementById("losses"), run);
}
