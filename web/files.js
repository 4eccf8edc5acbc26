// A run's files in the CLI's formats (src/store/results.rs): config.json, results.json and
// weights.safetensors written from a run trained in the page, and read back from files dropped on it
// (any run directory of the CLI or the Python package), as the one shape the views draw: a "run".

// safetensors: an 8-byte little-endian header length, the JSON header (padded with spaces to a
// multiple of 8), then the tensors' bytes; W [instances, m, n] and b [instances, n] in f32.
export function weightsSafetensors(exp, weights) {
  const count = exp.instances.length;
  const wBytes = weights.w.byteLength;
  const header = {
    W: { dtype: "F32", shape: [count, exp.hidden, exp.features], data_offsets: [0, wBytes] },
    b: { dtype: "F32", shape: [count, exp.features], data_offsets: [wBytes, wBytes + weights.b.byteLength] },
  };
  let text = JSON.stringify(header);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const head = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + head.length + wBytes + weights.b.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(new Uint8Array(weights.w.buffer, weights.w.byteOffset, wBytes), 8 + head.length);
  out.set(new Uint8Array(weights.b.buffer, weights.b.byteOffset, weights.b.byteLength), 8 + head.length + wBytes);
  return out;
}

// The f32 tensors of a safetensors file: {name: {shape, data: Float32Array}}.
export function readSafetensors(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (t.dtype !== "F32") throw new Error(`tensor ${name} is ${t.dtype}, not F32`);
    const [from, to] = t.data_offsets;
    const data = new Float32Array(bytes.slice(8 + length + from, 8 + length + to).buffer);
    tensors[name] = { shape: t.shape, data };
  }
  return tensors;
}

// SHA-256 in hex (config.json's weights_sha256); null where the browser gives no crypto.subtle
// (pages served over plain http from another host), since the field is optional.
async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

const finiteOrNull = (v) => (Number.isFinite(v) ? v : null);

// results.json of a finished run (Results::collect): rows of W, b, the loss curve and the losses.
export function resultsJson(exp, weights, records, evalLosses) {
  const { features: n, hidden: m } = exp;
  const instances = exp.instances.map((inst, i) => {
    const w = Array.from({ length: m }, (_, k) => Array.from(weights.w.subarray((i * m + k) * n, (i * m + k + 1) * n), finiteOrNull));
    const b = Array.from(weights.b.subarray(i * n, (i + 1) * n), finiteOrNull);
    const last = records.at(-1);
    const diverged = !records.every((r) => Number.isFinite(r.losses[i])) || w.flat().concat(b).some((v) => v === null);
    return {
      index: i,
      density: inst.density,
      importance: inst.importance,
      W: w,
      b,
      final_loss: last ? finiteOrNull(last.losses[i]) : null,
      eval_loss: finiteOrNull(evalLosses[i]),
      loss_curve: records.map((r) => [r.step, finiteOrNull(r.losses[i])]),
      setting: inst.setting,
      restart: inst.restart,
      // Every instance is its setting's only restart.
      best_of_setting: Number.isFinite(evalLosses[i]),
      diverged,
    };
  });
  return { model: exp.model, features: n, hidden: m, steps: exp.steps, instances };
}

// The three files of a run directory, as {name: bytes}.
// `abi` is abi.json (the crate's version and data stream).
export async function runFiles(exp, weights, records, evalLosses, device, abi) {
  const encoder = new TextEncoder();
  const safetensors = weightsSafetensors(exp, weights);
  const config = {
    experiment: exp, backend: "webgpu", device, tms_version: abi.tms_version, data_stream: abi.data_stream,
  };
  const digest = await sha256Hex(safetensors);
  if (digest) config.weights_sha256 = digest;
  return {
    "config.json": encoder.encode(JSON.stringify(config, null, 2)),
    "results.json": encoder.encode(JSON.stringify(resultsJson(exp, weights, records, evalLosses))),
    "weights.safetensors": safetensors,
  };
}

// A run to view, from dropped files ({name: bytes}): results.json alone, or config.json with
// weights.safetensors.
export function runFromFiles(files) {
  const json = (name) => JSON.parse(new TextDecoder().decode(files[name]));
  if (files["results.json"]) {
    const r = json("results.json");
    const { features: n, hidden: m } = r;
    return {
      model: r.model,
      features: n,
      hidden: m,
      instances: r.instances.map((inst) => ({
        density: inst.density,
        importance: inst.importance,
        w: Float32Array.from(inst.W.flat(), (v) => v ?? NaN),
        b: Float32Array.from(inst.b, (v) => v ?? NaN),
        curve: inst.loss_curve,
      })),
    };
  }
  if (files["config.json"] && files["weights.safetensors"]) {
    const exp = json("config.json").experiment;
    const t = readSafetensors(files["weights.safetensors"]);
    return viewOf(exp, { w: t.W.data, b: t.b.data }, []);
  }
  throw new Error("drop a run directory's results.json (or its config.json and weights.safetensors)");
}

// The run the views draw, from an experiment, its weights and loss records.
export function viewOf(exp, weights, records) {
  const { features: n, hidden: m } = exp;
  return {
    model: exp.model,
    features: n,
    hidden: m,
    instances: exp.instances.map((inst, i) => ({
      density: inst.density,
      importance: inst.importance,
      w: weights.w.subarray(i * m * n, (i + 1) * m * n),
      b: weights.b.subarray(i * n, (i + 1) * n),
      curve: records.map((r) => [r.step, r.losses[i]]),
    })),
  };
}
