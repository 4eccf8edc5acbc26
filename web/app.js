// The page: the settings form (every setting also a URL parameter), training on WebGPU with the
// figures redrawn as it goes, the run's files to download, a viewer for dropped run files, and the
// automation interface the browser test uses: `autorun=1` trains on load, and `report=URL` POSTs the
// run's config.json and weights.safetensors to URL?file=NAME, then results.json to URL itself (or,
// when the page cannot train, its reason to URL?file=error.txt). `view=URL` shows the run whose
// results.json is at URL/results.json, as if its files were dropped on the page (and reports what it
// shows to URL?file=viewed.txt).

import { makeHost, checkKnownAnswers } from "./philox.js";
import { SETTINGS, defaultValues, resolve, initialWeights, evaluate } from "./experiment.js";
import { openGpu, WebTrainer } from "./trainer.js";
import { runFiles, runFromFiles, viewOf } from "./files.js";
import { drawRun } from "./views.js";

// Steps between redraws of the figures while training.
const REDRAW_EVERY = 200;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const report = params.get("report");

function say(id, text, error = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", error);
}

async function post(url, body) {
  await fetch(url, { method: "POST", body });
}

// Tells the test harness (if any) why the page cannot train.
async function reportError(message) {
  if (report) await post(reportUrl("error.txt"), message);
}

// Where the page reports file `name`.
function reportUrl(name) {
  return `${report}${report.includes("?") ? "&" : "?"}file=${name}`;
}

function buildForm(values) {
  const form = $("settings");
  form.replaceChildren();
  for (const s of SETTINGS) {
    const label = document.createElement("label");
    label.title = s.help ?? "";
    label.append(s.label);
    const input = document.createElement(s.options ? "select" : "input");
    if (s.options) input.append(...s.options.map((o) => new Option(o, o)));
    input.name = s.key;
    input.value = values[s.key];
    label.append(input);
    form.append(label);
  }
}

function formValues() {
  return Object.fromEntries(SETTINGS.map((s) => [s.key, $("settings").elements[s.key].value]));
}

// Download links for a run's files.
function offerDownloads(files) {
  const box = $("downloads");
  box.replaceChildren("Download: ");
  for (const [name, bytes] of Object.entries(files)) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes]));
    a.download = name;
    a.textContent = name;
    box.append(a);
  }
  box.hidden = false;
}

async function main() {
  const abi = await (await fetch("abi.json")).json();
  const kernelFiles = [...new Set(abi.passes.concat(abi.register_kernels).map((p) => p.kernel))];
  const kernels = Object.fromEntries(
    await Promise.all(kernelFiles.map(async (f) => [f, await (await fetch(`kernels/${f}`)).text()])),
  );
  const host = makeHost(abi);
  const values = defaultValues(abi.defaults);
  for (const s of SETTINGS) if (params.has(s.key)) values[s.key] = params.get(s.key);
  buildForm(values);
  $("preset").onclick = () => buildForm(defaultValues(abi.defaults));
  const show = setUpViewer();
  if (params.has("view")) {
    const bytes = new Uint8Array(await (await fetch(`${params.get("view")}/results.json`)).arrayBuffer());
    const shown = show({ "results.json": bytes });
    if (report) await post(reportUrl("viewed.txt"), shown);
  }

  const wrong = checkKnownAnswers(host, abi);
  if (wrong.length) {
    const message = `the page's host arithmetic disagrees with tms's: ${wrong.join("; ")}`;
    say("gpu-status", message, true);
    await reportError(message);
    return;
  }
  let gpu;
  try {
    gpu = await openGpu();
    say("gpu-status", `WebGPU adapter: ${gpu.name}`);
  } catch (e) {
    say("gpu-status", `Training needs WebGPU, which this browser does not offer (${e.message}). The viewer still works: drop a run's files here.`, true);
    await reportError(`no WebGPU: ${e.message}`);
    return;
  }
  let stopping = false;
  $("train").disabled = false;
  $("stop").onclick = () => (stopping = true);
  $("train").onclick = async () => {
    $("train").disabled = true;
    $("stop").disabled = false;
    stopping = false;
    try {
      await train(gpu, abi, kernels, host, () => stopping);
    } catch (e) {
      say("status", e.message, true);
      await reportError(e.message);
    }
    $("train").disabled = false;
    $("stop").disabled = true;
  };
  if (params.get("autorun") === "1") $("train").onclick();
}

async function train(gpu, abi, kernels, host, stopRequested) {
  const exp = resolve(formValues(), abi.defaults, host);
  $("downloads").hidden = true;
  say("status", "preparing…");
  const initial = initialWeights(exp, host);
  const trainer = await WebTrainer.create(gpu, abi, kernels, exp, initial, host);
  drawRun(viewOf(exp, initial, []));
  const records = [];
  let seconds = 0;
  while (trainer.step < exp.steps && !stopRequested()) {
    const next = Math.min(exp.steps, (Math.floor(trainer.step / REDRAW_EVERY) + 1) * REDRAW_EVERY);
    const start = performance.now();
    while (trainer.step < next) records.push(...(await trainer.advance(next)));
    seconds += (performance.now() - start) / 1000;
    drawRun(viewOf(exp, await trainer.weights(), records));
    const perStep = (1000 * seconds) / trainer.step;
    say("status", `step ${trainer.step} of ${exp.steps}: ${perStep.toFixed(2)} ms per step`);
  }
  if (trainer.step < exp.steps) {
    say("status", `stopped at step ${trainer.step}`);
    return;
  }
  const weights = await trainer.weights();
  say("status", `${exp.steps} steps in ${seconds.toFixed(1)} s (${((1000 * seconds) / exp.steps).toFixed(2)} ms per step); evaluating…`);
  const evalLosses = await evaluate(exp, weights, host);
  const files = await runFiles(exp, weights, records, evalLosses, gpu.name, abi);
  drawRun(viewOf(exp, weights, records));
  offerDownloads(files);
  say("status", `${exp.steps} steps in ${seconds.toFixed(1)} s (${((1000 * seconds) / exp.steps).toFixed(2)} ms per step) on ${gpu.name}`);
  if (report) {
    await post(reportUrl("timing.json"), JSON.stringify({ steps: exp.steps, seconds, adapter: gpu.name }));
    await post(reportUrl("config.json"), files["config.json"]);
    await post(reportUrl("weights.safetensors"), files["weights.safetensors"]);
    await post(report, files["results.json"]);
  }
}

// Drag-and-drop (and the file chooser): view a run's files without training. Returns the function
// that shows files ({name: bytes}) and says what it showed.
function setUpViewer() {
  const show = (files) => {
    try {
      const run = runFromFiles(files);
      drawRun(run);
      const what = `viewing ${run.instances.length} instances of n = ${run.features}, m = ${run.hidden} from ${Object.keys(files).join(", ")}`;
      say("status", what);
      return what;
    } catch (e) {
      say("status", `cannot view these files: ${e.message}`, true);
      return e.message;
    }
  };
  const read = async (list) => {
    const files = {};
    for (const f of list) files[f.name] = new Uint8Array(await f.arrayBuffer());
    show(files);
  };
  window.addEventListener("dragover", (e) => {
    e.preventDefault();
    $("dropzone").hidden = false;
  });
  window.addEventListener("dragleave", () => ($("dropzone").hidden = true));
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    $("dropzone").hidden = true;
    read(e.dataTransfer.files);
  });
  $("files").addEventListener("change", (e) => read(e.target.files));
  return show;
}

main().catch(async (e) => {
  say("gpu-status", `the page failed to start: ${e.message}`, true);
  await reportError(`the page failed to start: ${e.message}`);
});
