#!/usr/bin/env python3
"""The PyTorch training loop that researchers use today, timed on tms's benchmark workloads.

This is the public notebook's loop (toy_models.ipynb) in its batched form: every instance is one slice of
a [instances, ...] tensor, the forward pass is two einsums, masks come from torch.rand, the optimizer is
AdamW (lr 1e-3, weight decay 0.01) over W and b of all instances, and the loss is the per-instance mean over
batch and features of I_i (x_i - x'_i)^2, summed over instances. Nothing here is tuned for speed beyond what
the notebook does, on purpose: it is the baseline `tms bench --compare-pytorch` reports against.

Requirements: python3 with torch (CPU or CUDA build); see benches/requirements.txt.
Usage: python3 benches/pytorch_loop.py --workload basic --device cpu [--steps T] [--repeats R]
Prints one JSON object: workload, device, seconds_per_step (median of the repeats), and the run settings.
"""
import argparse
import json
import statistics
import time

import torch

WORKLOADS = {
    # name: (features n, hidden m, instances, lowest density, importance decay)
    "basic": (20, 5, None, None, 0.7),
    "sweep": (20, 5, 1024, 1e-3, 0.7),
    "geometry": (400, 30, 32, 1e-3, 1.0),
    "large": (2048, 256, 4, 1e-1, 1.0),
}
BASIC_DENSITIES = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]


def densities(name):
    n, m, count, lowest, _ = WORKLOADS[name]
    if count is None:
        return BASIC_DENSITIES
    return [lowest ** (i / (count - 1)) for i in range(count)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", choices=WORKLOADS, default="basic")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=None, help="steps per repeat (default: about 0.5 s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=1024)
    args = p.parse_args()

    dev = torch.device(args.device)
    n, m, _, _, decay = WORKLOADS[args.workload]
    dens = torch.tensor(densities(args.workload), device=dev)
    inst = len(dens)
    importance = (decay ** torch.arange(n, device=dev, dtype=torch.float32))[None, :].expand(inst, n)
    W = torch.nn.Parameter(torch.empty(inst, n, m, device=dev))
    torch.nn.init.xavier_normal_(W)
    b = torch.nn.Parameter(torch.zeros(inst, n, device=dev))
    opt = torch.optim.AdamW([W, b], lr=1e-3, weight_decay=0.01)

    def step():
        feat = torch.rand((args.batch, inst, n), device=dev)
        present = torch.rand((args.batch, inst, n), device=dev) <= dens[None, :, None]
        x = torch.where(present, feat, torch.zeros((), device=dev))
        h = torch.einsum("bif,ifh->bih", x, W)
        out = torch.relu(torch.einsum("bih,ifh->bif", h, W) + b)
        loss = (importance * (x - out) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    warm = timed(5)
    steps = args.steps or max(1, min(2000, int(0.5 / max(warm, 1e-9))))
    times = sorted(timed(steps) for _ in range(args.repeats))
    print(json.dumps({
        "workload": args.workload,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "steps": steps,
        "repeats": args.repeats,
        "seconds_per_step": statistics.median(times),
    }))


if __name__ == "__main__":
    main()
