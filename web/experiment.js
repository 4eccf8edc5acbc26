// What to train: the page's settings (the subset of `tms train`'s flags it offers, with the same
// names as URL parameters), resolved into an experiment shaped like Rust's `Experiment` (so that
// config.json is the CLI's), the initial state (trainer::TrainState::initial) and the evaluation loss
// of a trained model (run::driver::evaluate), all on the host.

// The settings, in form order: URL parameter = `tms train` flag without the dashes.
export const SETTINGS = [
  { key: "model", label: "model", options: ["relu", "linear"], help: "x' = ReLU(WᵀWx + b) or WᵀWx + b" },
  { key: "features", label: "features n", help: "sparse input features" },
  { key: "hidden", label: "hidden m", help: "hidden dimensions" },
  { key: "density", label: "densities 1 − S", help: "comma-separated, one instance each" },
  { key: "importance-decay", label: "importance decay", help: "I_i = r^i" },
  { key: "steps", label: "steps" },
  { key: "lr", label: "learning rate" },
  { key: "seed", label: "seed", help: "integer below 2^53" },
  { key: "batch", label: "batch" },
  { key: "optimizer", label: "optimizer", options: ["adamw", "adam"] },
  { key: "weight-decay", label: "weight decay", help: "default: 0.01 for adamw, 0 for adam" },
  { key: "schedule", label: "lr schedule", options: ["constant", "linear", "cosine"] },
  { key: "log-every", label: "log every", help: "steps between logged losses" },
  { key: "eval-samples", label: "eval samples" },
];

// The form's initial values: the seed's experiment (abi.defaults, resolved by the Rust code).
export function defaultValues(defaults) {
  return {
    model: defaults.model,
    features: String(defaults.features),
    hidden: String(defaults.hidden),
    density: defaults.instances.map((i) => i.density).join(","),
    "importance-decay": "0.7",
    steps: String(defaults.steps),
    lr: String(defaults.optimizer.lr),
    seed: String(defaults.seed),
    batch: String(defaults.batch),
    optimizer: defaults.optimizer.kind,
    "weight-decay": "",
    schedule: defaults.schedule,
    "log-every": String(defaults.log_every),
    "eval-samples": String(defaults.eval_samples),
  };
}

// A one-line error naming the setting, like the CLI's.
class SettingError extends Error {}
function invalid(key, value, allowed) {
  return new SettingError(`invalid --${key} ${JSON.stringify(value)}: ${allowed}`);
}
function integer(values, key, min, max) {
  const text = String(values[key]).trim();
  const v = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw invalid(key, values[key], `must be an integer from ${min} to ${max}`);
  }
  return v;
}
function positive(values, key) {
  const v = Number(String(values[key]).trim());
  if (String(values[key]).trim() === "" || !Number.isFinite(v) || v <= 0) {
    throw invalid(key, values[key], "must be a positive number");
  }
  return v;
}
function choice(values, key, options) {
  if (!options.includes(values[key])) throw invalid(key, values[key], `must be one of ${options.join(", ")}`);
  return values[key];
}

// The experiment of `values` (strings by setting key), or a SettingError.
export function resolve(values, defaults, host) {
  const features = integer(values, "features", 1, 65536);
  const hidden = integer(values, "hidden", 1, 65536);
  const densities = String(values.density).split(",").map((d) => d.trim());
  const parsed = densities.map(Number);
  if (densities.some((d) => d === "") || parsed.some((d) => !(d > 0 && d <= 1))) {
    throw invalid("density", values.density, "must be a comma-separated list of numbers in (0, 1]");
  }
  const decay = positive(values, "importance-decay");
  const importance = host.geometricImportance(features, decay);
  if (importance.some((v) => !(v <= 1e9 && v > 0))) {
    throw invalid("importance-decay", values["importance-decay"], "gives importances beyond 1e9 or below the smallest float");
  }
  const kind = choice(values, "optimizer", ["adamw", "adam"]);
  const weightDecayText = String(values["weight-decay"] ?? "").trim();
  const weightDecay = weightDecayText === "" ? (kind === "adamw" ? 0.01 : 0) : Number(weightDecayText);
  if (!(weightDecay >= 0 && Number.isFinite(weightDecay))) {
    throw invalid("weight-decay", values["weight-decay"], "must be a number ≥ 0");
  }
  return {
    model: choice(values, "model", ["relu", "linear"]),
    features,
    hidden,
    instances: parsed.map((density, setting) => ({ density, importance, setting, restart: 0 })),
    batch: integer(values, "batch", 1, 1 << 20),
    steps: integer(values, "steps", 1, 2 ** 31 - 1),
    optimizer: { ...defaults.optimizer, kind, lr: positive(values, "lr"), weight_decay: weightDecay },
    schedule: choice(values, "schedule", ["constant", "linear", "cosine"]),
    log_every: integer(values, "log-every", 1, 2 ** 31 - 1),
    eval_samples: integer(values, "eval-samples", 1, 1 << 24),
    seed: integer(values, "seed", 0, Number.MAX_SAFE_INTEGER),
    first_instance: 0,
  };
}

// trainer::TrainState::initial: Xavier-normal W from the Init stream, b = 0 (f32, instance-major).
export function initialWeights(exp, host) {
  const { features: n, hidden: m } = exp;
  const std = Math.sqrt(2 / (n + m));
  const w = new Float32Array(exp.instances.length * m * n);
  for (let i = 0; i < exp.instances.length; i++) {
    for (let j = 0; j < m * n; j++) w[i * m * n + j] = std * host.initNormal(exp.seed, i, j);
  }
  return { w, b: new Float32Array(exp.instances.length * n) };
}

// run::driver::evaluate: the loss of every instance on its held-out batch (the Eval streams, step 0),
// in doubles; yields to the page now and then so that it stays responsive.
export async function evaluate(exp, weights, host) {
  const { features: n, hidden: m } = exp;
  const c = 1 / (exp.eval_samples * n);
  const relu = exp.model === "relu";
  const term = (y, x, imp) => {
    const out = relu && !(y > 0) ? 0 : y;
    return imp * (out - x) * (out - x);
  };
  const losses = [];
  const x32 = new Float32Array(n), h = new Float64Array(m);
  for (let i = 0; i < exp.instances.length; i++) {
    const inst = exp.instances[i];
    const w = weights.w.subarray(i * m * n, (i + 1) * m * n), b = weights.b.subarray(i * n, (i + 1) * n);
    const threshold = host.presenceThreshold(inst.density);
    let zero = 0;
    for (let j = 0; j < n; j++) zero += term(b[j], 0, inst.importance[j]);
    zero *= c;
    let total = 0;
    for (let s = 0; s < exp.eval_samples; s++) {
      if (s % 4096 === 4095) await new Promise((r) => setTimeout(r, 0));
      if (host.evalSample(exp.seed, i, threshold, s, x32) === 0) {
        total += zero;
        continue;
      }
      for (let k = 0; k < m; k++) {
        let acc = 0;
        for (let j = 0; j < n; j++) acc += w[k * n + j] * x32[j];
        h[k] = acc;
      }
      let loss = 0;
      for (let j = 0; j < n; j++) {
        let y = b[j];
        for (let k = 0; k < m; k++) y += w[k * n + j] * h[k];
        loss += term(y, x32[j], inst.importance[j]);
      }
      total += loss * c;
    }
    losses.push(total);
  }
  return losses;
}
