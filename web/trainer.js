// The GPU trainer of src/gpu/trainer.rs, driven through the browser's WebGPU: the same WGSL kernels
// (kernels/*.wgsl, with the prelude generated from src/gpu/abi.rs), the same bind group layout,
// buffers and dispatch sequence, every size, offset and binding number read from abi.json. Two of
// the native trainer's kernel sets:
// - the register kernel, where the site carries it for the run's (n, m) (abi.register_kernels): one
//   workgroup per instance, REGISTER_STEPS steps per dispatch;
// - otherwise the tiled path: six dispatches per step (sample X, H = X Wᵀ, δ, dH, the gradients, Adam).
// The dispatches of a chunk of steps go into one command buffer, each reading its Params and step
// constants from its own slot of the dispatch buffer (a dynamic offset). All instances form one
// shard: a run too large for one storage binding is refused (the CLI splits it).

// Steps per command buffer, and log points it can hold (the loss buffer's slots, as natively).
const CHUNK_STEPS = 100;
const LOG_SLOTS = 64;
// Steps per register-kernel dispatch: short, so that a slow adapter stays far from the browser's
// watchdog (the native trainer runs up to 100).
const REGISTER_STEPS = 20;

// The adapter and a device with its storage limits; throws an Error saying why there is none.
export async function openGpu() {
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("WebGPU found no adapter");
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
    },
  });
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") || "unknown adapter";
  return { adapter, device, name: `${name} (WebGPU)` };
}

// Writes struct `desc` (abi.json's fields and offsets) of `values` at byte `at` of `view`.
function writeStruct(view, at, desc, values) {
  for (const f of desc.fields) {
    const v = values[f.name];
    if (v === undefined) throw new Error(`no value for ${f.name}`);
    if (f.type === "u32") view.setUint32(at + f.offset, v, true);
    else view.setFloat32(at + f.offset, v, true);
  }
}

export class WebTrainer {
  // Builds buffers and pipelines for `exp` starting from `initial` ({w, b}); `kernels` maps file
  // names to WGSL source.
  static async create(gpu, abi, kernels, exp, initial, host) {
    const t = new WebTrainer();
    Object.assign(t, { gpu, abi, exp, host, step: 0 });
    const { device } = gpu;
    const C = abi.constants;
    const { features: n, hidden: m, batch } = exp;
    const count = m * n + n, I = exp.instances.length;
    const tiles = (len) => Math.ceil(len / C.TILE);
    const limits = device.limits;
    const maxGroups = limits.maxComputeWorkgroupsPerDimension;
    const register = abi.register_kernels.find((r) => r.features === n && r.hidden === m);
    t.kernel = register ? "register" : "tiled";
    t.perDispatch = register ? REGISTER_STEPS : 1;
    // One sampler thread per sample and chunk of 16 features (gpu::abi::sampler_workgroups).
    t.samplers = Math.ceil((batch * Math.ceil(n / 16)) / C.SAMPLER_WG);
    const lossTiles = tiles(n) * tiles(batch);
    // The tiled path's H, dH, δ, X and gradients; placeholders for the register kernel.
    const sizes = {
      state: 3 * I * count * 4,
      losses: LOG_SLOTS * I * 4,
      hidden: register ? 0 : 2 * I * batch * m * 4,
      delta: register ? 0 : I * batch * n * 4,
      grad: register ? 0 : I * (count + lossTiles) * 4,
      batch: register ? 0 : I * batch * n * 4,
    };
    const largest = Math.max(...Object.values(sizes));
    const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    if (largest > maxBinding) {
      throw new Error(`this run needs ${largest} bytes in one storage buffer, more than this GPU's ${maxBinding}: use fewer instances, a smaller batch or the CLI`);
    }
    if (Math.max(register ? 0 : Math.max(t.samplers, tiles(batch)), I) > maxGroups) throw new Error(`the batch or the instances need more than this GPU's ${maxGroups} workgroups per dimension`);

    const storage = (size) => device.createBuffer({ size: Math.max(size, 16), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    const readback = (size) => device.createBuffer({ size: Math.max(size, 16), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

    // State: [params | first moments | second moments], each [instances][W then b].
    const state = new Float32Array(3 * I * count);
    for (let i = 0; i < I; i++) {
      state.set(initial.w.subarray(i * m * n, (i + 1) * m * n), i * count);
      state.set(initial.b.subarray(i * n, (i + 1) * n), i * count + m * n);
    }
    t.state = storage(sizes.state);
    device.queue.writeBuffer(t.state, 0, state);

    // Shard: Config, the importances (f32 bits), the presence thresholds, the feature
    // distribution's layout words (the default distribution: the kernels' plain sampler).
    const cfg = abi.structs.Config;
    const layoutWords = host.layoutWords(n);
    const shard = new ArrayBuffer(cfg.size + 4 * (I * n + I + layoutWords.length));
    const view = new DataView(shard);
    const [seedLo, seedHi] = host.seedKey(exp.seed);
    const o = exp.optimizer;
    writeStruct(view, 0, cfg, {
      features: n, hidden: m, batch, instances: I, first_instance: 0, slices: 1,
      relu: exp.model === "relu" ? 1 : 0, hidden_relu: 0, untied: 0, log_every: exp.log_every, total_steps: exp.steps,
      seed_lo: seedLo, seed_hi: seedHi,
      presence_stream: abi.streams.TrainPresence, mask_stream: abi.streams.TrainMask, value_stream: abi.streams.TrainValue,
      beta1: o.beta1, beta2: o.beta2, eps: o.eps, scale: 1 / (batch * n),
    });
    exp.instances.forEach((inst, i) => {
      inst.importance.forEach((v, j) => view.setFloat32(cfg.size + 4 * (i * n + j), v, true));
      view.setUint32(cfg.size + 4 * (I * n + i), host.presenceThreshold(inst.density), true);
    });
    layoutWords.forEach((word, k) => view.setUint32(cfg.size + 4 * (I * n + I + k), word, true));
    const shardBuffer = storage(shard.byteLength);
    device.queue.writeBuffer(shardBuffer, 0, shard);

    // One dispatch slot per step of a chunk: Params and the step's constants, at aligned offsets.
    const slotBytes = abi.structs.Params.size + t.perDispatch * abi.structs.StepConstants.size;
    const align = limits.minStorageBufferOffsetAlignment;
    t.stride = Math.ceil(slotBytes / align) * align;
    t.dispatches = storage(t.stride * Math.ceil(CHUNK_STEPS / t.perDispatch));
    t.losses = storage(sizes.losses);
    t.lossReadback = readback(sizes.losses);
    t.stateReadback = readback(I * count * 4);

    const layout = device.createBindGroupLayout({
      entries: abi.layout.map((e) => ({
        binding: e.binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: e.read_only ? "read-only-storage" : "storage", hasDynamicOffset: e.dynamic },
      })),
    });
    const buffers = {
      [C.STATE_BINDING]: t.state, [C.SHARD_BINDING]: shardBuffer, [C.DISPATCH_BINDING]: t.dispatches,
      [C.LOSSES_BINDING]: t.losses, [C.HIDDEN_BINDING]: storage(sizes.hidden), [C.DELTA_BINDING]: storage(sizes.delta),
      [C.GRAD_BINDING]: storage(sizes.grad), [C.BATCH_BINDING]: storage(sizes.batch),
    };
    t.bindGroup = device.createBindGroup({
      layout,
      entries: abi.layout.map((e) => ({
        binding: e.binding,
        resource: e.dynamic ? { buffer: buffers[e.binding], offset: 0, size: t.stride } : { buffer: buffers[e.binding] },
      })),
    });
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
    const passes = register ? [register] : abi.passes;
    const modules = {};
    for (const file of new Set(passes.map((p) => p.kernel))) {
      modules[file] = device.createShaderModule({ code: kernels[file], label: file });
      const info = await modules[file].getCompilationInfo();
      const errors = info.messages.filter((msg) => msg.type === "error");
      if (errors.length) throw new Error(`${file}: ${errors.map((e) => `${e.lineNum}:${e.linePos} ${e.message}`).join("; ")}`);
    }
    t.pipelines = await Promise.all(
      passes.map((p) => device.createComputePipelineAsync({ layout: pipelineLayout, compute: { module: modules[p.kernel], entryPoint: p.entry } })),
    );
    // The grids of GpuTrainer::encode, in pass order.
    if (register) {
      t.grids = [[I, 1, 1]];
      return t;
    }
    const adamGroups = Math.ceil((I * count) / C.ADAM_WG);
    const adamX = Math.min(adamGroups, maxGroups);
    t.grids = [
      [t.samplers, 1, I],
      [tiles(m), tiles(batch), I],
      [tiles(n), tiles(batch), I],
      [tiles(m), tiles(batch), I],
      [tiles(n), tiles(m), I],
      [adamX, Math.ceil(adamGroups / adamX), 1],
    ];
    return t;
  }

  // trainer::is_log_step.
  isLogStep(step) {
    return step % this.exp.log_every === 0 || step + 1 === this.exp.steps;
  }

  // Runs steps up to `until` (at most CHUNK_STEPS of them, and at most LOG_SLOTS log points) in one
  // command buffer; returns the loss records ({step, losses}) of the log points it passed.
  async advance(until) {
    const { device } = this.gpu;
    const from = this.step;
    const logs = [];
    let to = from;
    while (to < until && to - from < CHUNK_STEPS) {
      if (this.isLogStep(to)) {
        if (logs.length === LOG_SLOTS) break;
        logs.push(to);
      }
      to++;
    }
    // One slot per dispatch: Params, then the constants of its steps.
    const count = Math.ceil((to - from) / this.perDispatch);
    const slots = new ArrayBuffer(this.stride * count);
    const view = new DataView(slots);
    const { Params, StepConstants } = this.abi.structs;
    for (let d = 0; d < count; d++) {
      const first = from + d * this.perDispatch, steps = Math.min(this.perDispatch, to - first);
      const at = this.stride * d;
      writeStruct(view, at, Params, { first_step: first, steps, log_slot: logs.filter((l) => l < first).length });
      for (let s = 0; s < steps; s++) {
        const [step_size, bias2_sqrt, decay_factor, l2] = this.host.stepConstants(this.exp, first + s);
        writeStruct(view, at + Params.size + s * StepConstants.size, StepConstants, { step_size, bias2_sqrt, decay_factor, l2 });
      }
    }
    device.queue.writeBuffer(this.dispatches, 0, slots);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let d = 0; d < count; d++) {
      pass.setBindGroup(0, this.bindGroup, [d * this.stride]);
      this.pipelines.forEach((pipeline, p) => {
        pass.setPipeline(pipeline);
        pass.dispatchWorkgroups(...this.grids[p]);
      });
    }
    pass.end();
    const I = this.exp.instances.length;
    if (logs.length) encoder.copyBufferToBuffer(this.losses, 0, this.lossReadback, 0, logs.length * I * 4);
    device.queue.submit([encoder.finish()]);
    this.step = to;
    if (!logs.length) {
      await device.queue.onSubmittedWorkDone();
      return [];
    }
    await this.lossReadback.mapAsync(GPUMapMode.READ, 0, logs.length * I * 4);
    const all = new Float32Array(this.lossReadback.getMappedRange(0, logs.length * I * 4).slice(0));
    this.lossReadback.unmap();
    return logs.map((step, slot) => ({ step, losses: all.slice(slot * I, (slot + 1) * I) }));
  }

  // W [instances][m][n] and b [instances][n] read back from the device.
  async weights() {
    const { device } = this.gpu;
    const { features: n, hidden: m } = this.exp;
    const I = this.exp.instances.length, count = m * n + n;
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(this.state, 0, this.stateReadback, 0, I * count * 4);
    device.queue.submit([encoder.finish()]);
    await this.stateReadback.mapAsync(GPUMapMode.READ, 0, I * count * 4);
    const data = new Float32Array(this.stateReadback.getMappedRange(0, I * count * 4).slice(0));
    this.stateReadback.unmap();
    const w = new Float32Array(I * m * n), b = new Float32Array(I * n);
    for (let i = 0; i < I; i++) {
      w.set(data.subarray(i * count, i * count + m * n), i * m * n);
      b.set(data.subarray(i * count + m * n, (i + 1) * count), i * n);
    }
    return { w, b };
  }
}
