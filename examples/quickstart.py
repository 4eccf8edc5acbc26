"""Quickstart: train the seed's experiment from Python and draw WᵀW and b, as the paper does.

    pip install ./python matplotlib
    python examples/quickstart.py                  # writes quickstart.png

Trains the ReLU output model (n = 20 features, m = 5 hidden dimensions, I_i = 0.7^i) at seven
feature densities with the public notebook's settings, on a GPU if wgpu finds one and otherwise on
the CPU (about 6 s on 2 cores), then draws one panel per density: WᵀW (features by features, most
important first) and, beside it, b as a one-column strip.
"""

import argparse

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
import numpy as np
from mpl_toolkits.axes_grid1 import make_axes_locatable

import tms

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=10_000)
parser.add_argument("--model", default="relu", choices=["relu", "linear"])
parser.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
parser.add_argument("--out", default="quickstart.png", help="the PNG to write")
args = parser.parse_args()

run = tms.train(model=args.model, steps=args.steps, backend=args.backend)
print(run)
gram = run.gram()  # WᵀW per instance, [instances, n, n]
scale = np.abs(gram).max()
bias_scale = np.abs(run.b).max()

fig, axes = plt.subplots(1, len(run), figsize=(2.4 * len(run), 3.0))
for i, w_ax in enumerate(axes):
    # b as a strip of the same height beside WᵀW, on its own colour scale.
    b_ax = make_axes_locatable(w_ax).append_axes("right", size="6%", pad=0.05)
    image = w_ax.imshow(gram[i], cmap="RdBu_r", vmin=-scale, vmax=scale)
    bias = b_ax.imshow(run.b[i][:, None], cmap="RdBu_r", vmin=-bias_scale, vmax=bias_scale,
                       aspect="auto")
    w_ax.set_title(f"1 − S = {run.density[i]:g}", fontsize=9)
    represented = run.metrics.features_represented[i]
    w_ax.set_xlabel(f"{represented} of {run.features} represented", fontsize=8)
    for ax in (w_ax, b_ax):
        ax.set_xticks([])
        ax.set_yticks([])
axes[0].set_ylabel("features (by importance)")
fig.subplots_adjust(left=0.03, right=0.88, top=0.78)
fig.colorbar(image, cax=fig.add_axes([0.895, 0.15, 0.007, 0.6])).set_label("WᵀW")
fig.colorbar(bias, cax=fig.add_axes([0.94, 0.15, 0.007, 0.6])).set_label("b")
fig.suptitle(
    f"{run.model} model, n = {run.features}, m = {run.hidden}, {run.steps} steps: "
    "WᵀW with b beside it, from dense (left) to sparse (right) features",
    fontsize=10,
)
fig.savefig(args.out, dpi=120)
print(f"wrote {args.out}")
