// The few lines of host arithmetic the native trainers do in Rust, ported to JavaScript: Philox4x32-10
// (src/features.rs), the initial-weight normals, the evaluation samples, presence thresholds,
// geometric importances (src/experiment) and the optimizer's per-step constants (src/optim.rs).
// Everything random during training is drawn by the WGSL kernels; these run once per run on the
// host. The constants come from abi.json (generated from the Rust declarations), and
// checkKnownAnswers compares every function with values the Rust code computed at build time.

const TWO_32 = 4294967296;

// The high 32 bits of a · b for 32-bit a, b: 16-bit halves keep every product exact in a double.
function mulhi(a, b) {
  const aLo = a & 0xffff, aHi = a >>> 16, bLo = b & 0xffff, bHi = b >>> 16;
  const loLo = aLo * bLo, hiLo = aHi * bLo, loHi = aLo * bHi, hiHi = aHi * bHi;
  const cross = (loLo >>> 16) + (hiLo & 0xffff) + (loHi & 0xffff);
  return (hiHi + (hiLo >>> 16) + (loHi >>> 16) + (cross >>> 16)) >>> 0;
}

export function makeHost(abi) {
  const { M0, M1, W0, W1 } = abi.philox;
  const streams = abi.streams;

  // Philox4x32-10 of a counter [4 × u32] under a key [2 × u32].
  function philox(counter, key) {
    let [c0, c1, c2, c3] = counter.map((v) => v >>> 0);
    let [k0, k1] = key.map((v) => v >>> 0);
    for (let round = 0; round < 10; round++) {
      if (round > 0) {
        k0 = (k0 + W0) >>> 0;
        k1 = (k1 + W1) >>> 0;
      }
      const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
      const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
      [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
    }
    return [c0, c1, c2, c3];
  }

  // The Philox key of a seed (a safe integer: seeds stop at 2^53 − 1 in the page).
  function seedKey(seed) {
    return [seed % TWO_32 >>> 0, Math.floor(seed / TWO_32) >>> 0];
  }

  // features::init_normal: Box–Muller on two 53-bit uniforms of the Init stream, in doubles.
  function initNormal(seed, instance, index) {
    const w = philox([index, 0, instance, streams.Init], seedKey(seed));
    // (w0 << 21) ^ (w1 >> 11) as a 53-bit integer: the two parts do not overlap, so ^ is +.
    const u1 = (w[0] * 2097152 + (w[1] >>> 11)) / 9007199254740992;
    const u2 = (w[2] * 2097152 + (w[3] >>> 11)) / 9007199254740992;
    return Math.sqrt(-2.0 * Math.log(1.0 - u1)) * Math.cos(2 * Math.PI * u2);
  }

  // features::presence_threshold: a feature is present with probability (threshold + 1) / 2^32.
  function presenceThreshold(density) {
    const cut = Math.ceil(density * TWO_32);
    return Math.min(Math.max(cut, 1), TWO_32) - 1;
  }

  // FeatureSource::sample of the evaluation streams (independent features, uniform values): sample
  // `sample` of step 0 into x (Float32Array of n); returns how many features are present. Chunks of
  // 16 features: feature 16c + i is present iff byte i of the chunk's presence call is below the
  // threshold's top byte, or equal to it and its mask word's top 24 bits are ≤ the threshold's low
  // 24; the k-th present feature of the chunk takes word k % 4 of value call 4c + k / 4.
  function evalSample(seed, instance, threshold, sample, x) {
    const n = x.length, chunks = Math.ceil(n / 16), groups = Math.ceil(n / 4), key = seedKey(seed);
    const top = threshold >>> 24, low = threshold & 0xffffff;
    const call = (index, stream) => philox([index >>> 0, 0, instance, stream], key);
    let present = 0;
    for (let c = 0; c < chunks; c++) {
      const bytes = call(sample * chunks + c, streams.EvalPresence);
      let value = null, k = 0; // k: present features of the chunk so far
      for (let i = 0; i < 16 && 16 * c + i < n; i++) {
        const f = 16 * c + i, byte = (bytes[i >> 2] >>> (8 * (i & 3))) & 0xff;
        const tie = () => low === 0xffffff || call(sample * groups + (f >> 2), streams.EvalMask)[f & 3] >>> 8 <= low;
        const live = byte < top || (byte === top && tie());
        if (live && k % 4 === 0) value = call(sample * groups + 4 * c + (k >> 2), streams.EvalValue);
        x[f] = live ? (value[k % 4] >>> 8) * (1 / 16777216) : 0;
        k += live ? 1 : 0;
      }
      present += k;
    }
    return present;
  }

  // experiment::geometric_importance: r^i in doubles as Rust's powi computes it (compiler-rt's
  // __powidf2: binary exponentiation), rounded to f32.
  function powi(r, i) {
    let result = 1.0;
    for (let base = r, e = i; ; ) {
      if (e & 1) result *= base;
      e >>= 1;
      if (e === 0) break;
      base *= base;
    }
    return result;
  }
  function geometricImportance(n, r) {
    return Array.from({ length: n }, (_, i) => Math.fround(powi(r, i)));
  }

  // optim::optimizer_constants at learning-rate multiplier `scale` (schedules: optim::schedule_scale).
  function stepConstants(exp, step) {
    const o = exp.optimizer, progress = step / exp.steps;
    const scale = { constant: 1, linear: 1 - progress, cosine: Math.cos(0.5 * Math.PI * progress) }[exp.schedule];
    const lr = o.lr * scale, t = step + 1;
    const bias1 = 1 - Math.pow(o.beta1, t), bias2 = 1 - Math.pow(o.beta2, t);
    const adamw = o.kind === "adamw";
    return [lr / bias1, Math.sqrt(bias2), adamw ? 1 - lr * o.weight_decay : 1, adamw ? 0 : o.weight_decay].map(Math.fround);
  }

  // The shard's layout words of the default feature distribution (features::Distribution::
  // layout_words): a header (uniform values, no exactly-K, paper mode, "plain"), then per feature its
  // set's first feature and size | kind << 30, here itself and 1 (independent).
  function layoutWords(features) {
    const words = [0, 0, 0, 1];
    for (let f = 0; f < features; f++) words.push(f, 1);
    return words;
  }

  return { philox, seedKey, initNormal, presenceThreshold, evalSample, geometricImportance, stepConstants, layoutWords };
}

// Compares the port with the Rust known answers of abi.json; returns a list of disagreements (empty
// when all agree). Philox words, thresholds and samples must agree exactly; normals within a few
// ulps of a double (Math.log and Math.cos may round differently from the C library's), importances
// and step constants within one f32 ulp (Math.pow likewise).
export function checkKnownAnswers(host, abi) {
  const ka = abi.known_answers, wrong = [];
  const ulps = (a, b, ulp) => Math.abs(a - b) <= ulp * Math.max(Math.abs(a), Math.abs(b), 1e-30);
  for (const { counter, key, out } of ka.philox) {
    const got = host.philox(counter, key);
    if (got.some((v, i) => v !== out[i])) wrong.push(`philox ${counter} ${key}: ${got} ≠ ${out}`);
  }
  for (const { seed, instance, index, value } of ka.normals) {
    const got = host.initNormal(seed, instance, index);
    if (!ulps(got, value, 4 * 2 ** -52)) wrong.push(`normal ${seed}/${instance}/${index}: ${got} ≠ ${value}`);
  }
  for (const { features, words } of ka.layout_words) {
    const got = host.layoutWords(features);
    if (got.length !== words.length || got.some((v, i) => v !== words[i])) wrong.push(`layout words of ${features} features`);
  }
  for (const { density, threshold } of ka.thresholds) {
    if (host.presenceThreshold(density) !== threshold) wrong.push(`threshold ${density}`);
  }
  for (const s of ka.samples) {
    const x = new Float32Array(s.features), threshold = host.presenceThreshold(s.density);
    s.eval_samples.forEach((expected, i) => {
      host.evalSample(s.seed, s.instance, threshold, i, x);
      if (expected.some((v, j) => v !== x[j])) wrong.push(`eval sample ${i} of instance ${s.instance}`);
    });
  }
  for (const { features, decay, importance } of ka.importances) {
    const got = host.geometricImportance(features, decay);
    if (got.some((v, i) => !ulps(v, importance[i], 2 ** -23))) wrong.push(`importance ${decay}`);
  }
  for (const { step, constants } of ka.step_constants.values) {
    const got = host.stepConstants(abi.defaults, step);
    if (got.some((v, i) => !ulps(v, constants[i], 2 ** -23))) wrong.push(`step constants of step ${step}: ${got} ≠ ${constants}`);
  }
  return wrong;
}
