"""Toy Models of Superposition, trained on the CPU or any GPU by the Rust library ``tms``.

>>> import tms
>>> run = tms.train(steps=500, backend="cpu")   # the seed's experiment, 500 steps, in memory
>>> run.W.shape                                  # [instances, m, n]
(7, 5, 20)

``train`` takes the settings of ``tms train`` as keywords (``help(tms.train)`` lists them), ``load``
reads any run directory, ``Run`` holds W, b, losses and the superposition metrics as numpy arrays.
This module is the thin Python layer: the work, the checks and the error messages are the library's
(``tms._tms``), shared with the command line.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _tms

__version__: str = _tms.__version__

__all__ = ["train", "resume", "load", "reproduce", "devices", "Run", "Metrics", "__version__"]

PathLike = Union[str, "os.PathLike[str]"]
#: ``progress=``: True (a bar: tqdm if installed, else a plain line), False, or a function
#: ``f(step, steps, mean_loss)`` called after every chunk of steps.
ProgressArg = Union[bool, Callable[[int, int, float], Any]]


def train(
    config: Union[PathLike, Mapping[str, Any], None] = None,
    *,
    model: Optional[str] = None,
    features: Optional[int] = None,
    hidden: Optional[int] = None,
    density: Union[float, Sequence[float], None] = None,
    importance_decay: Optional[float] = None,
    instances: Optional[Sequence[Mapping[str, Any]]] = None,
    batch: Optional[int] = None,
    steps: Optional[int] = None,
    lr: Optional[float] = None,
    optimizer: Optional[str] = None,
    weight_decay: Optional[float] = None,
    schedule: Optional[str] = None,
    log_every: Optional[int] = None,
    eval_samples: Optional[int] = None,
    seed: Optional[int] = None,
    extra_importance: Union[float, Sequence[float], None] = None,
    extra_feature: Optional[int] = None,
    restarts: Optional[int] = None,
    feature_sets: Optional[str] = None,
    anticorrelated_mode: Optional[str] = None,
    values: Optional[str] = None,
    exactly_k: Optional[int] = None,
    backend: str = "auto",
    adapter: Union[str, int, None] = None,
    devices: Optional[Sequence[Union[str, int]]] = None,
    shard: Optional[str] = None,
    out: Optional[PathLike] = None,
    force: bool = False,
    checkpoint_every: Optional[int] = None,
    progress: ProgressArg = True,
) -> "Run":
    # The docstring is assembled below from the command line's own declaration of the settings.
    arguments = dict(locals())
    flags = {k: v for k, v in arguments.items() if k in _SETTINGS and v is not None}
    for name, value in flags.items():
        if _SETTINGS[name].is_list and not isinstance(value, (list, tuple, np.ndarray)):
            flags[name] = [value]
    config_path, config_json = None, None
    if isinstance(config, Mapping):
        config_json = _to_json(config)
    elif config is not None:
        config_path = os.fspath(config)
    with _Progress(progress) as report:
        native = _tms.train(
            _to_json(flags),
            config_path,
            config_json,
            backend,
            None if adapter is None else str(adapter),
            None if devices is None else [str(d) for d in devices],
            shard,
            None if out is None else os.fspath(out),
            force,
            checkpoint_every,
            report,
        )
    return Run(native)


def resume(
    dir: PathLike,
    *,
    backend: str = "auto",
    adapter: Union[str, int, None] = None,
    devices: Optional[Sequence[Union[str, int]]] = None,
    checkpoint_every: Optional[int] = None,
    progress: ProgressArg = True,
) -> "Run":
    """Continues the interrupted run in ``dir`` from its checkpoint to the end (``tms train --resume``).

    The settings come from the checkpoint; the result is bit-identical to an uninterrupted run.
    ``backend``, ``adapter``, ``devices``, ``checkpoint_every`` and ``progress`` are as in ``train``.
    """
    with _Progress(progress) as report:
        native = _tms.resume(
            os.fspath(dir),
            backend,
            None if adapter is None else str(adapter),
            None if devices is None else [str(d) for d in devices],
            checkpoint_every,
            report,
        )
    return Run(native)


def load(dir: PathLike) -> "Run":
    """Reads a finished run directory: one that ``tms train --out DIR``, ``tms.train(out=DIR)``,
    ``Run.save(DIR)``, ``tms merge`` or ``tms reproduce`` (each of its run subdirectories) wrote.

    >>> run = tms.load("results/basic/relu")
    """
    return Run(_tms.load(os.fspath(dir)))


def reproduce(name: str, *, progress: ProgressArg = True, **options: Any) -> Dict[str, "Run"]:
    """Runs one of the paper's experiments end to end, as ``tms reproduce NAME``: training, figures
    and ``summary.md`` in ``out`` (default ``results/NAME`` under the working directory).

    ``name`` is ``basic``, ``intro``, ``phase`` or ``geometry``; ``options`` are the command's flags
    as keywords (``steps=2000``, ``restarts=2``, ``backend="cpu"``, ``out="runs/basic"``,
    ``force=True``, ``redraw=True``, and each reproduction's own, e.g. ``grid=10`` for phase;
    ``tms reproduce NAME --help`` lists them). Returns the runs it wrote, by subdirectory name.
    """
    with _Progress(progress) as report:
        _tms.reproduce([name] + _flags(options), report)
    out = os.fspath(options.get("out") or os.path.join("results", name))
    return {
        entry: load(os.path.join(out, entry))
        for entry in sorted(os.listdir(out))
        if os.path.exists(os.path.join(out, entry, "results.json"))
    }


def sae(run: PathLike, out: PathLike, **options: Any) -> Dict[str, Any]:
    """Trains sparse autoencoders on the hidden activations h = W x of a finished run's toy models
    and scores them against the true features (the columns of W), as ``tms sae RUN --out OUT``;
    writes ``OUT/sae.json`` and returns it as :func:`load_sae` does.

    ``options`` are the command's flags as keywords: ``latents=[5, 10]``, ``kind=["l1", "topk"]``,
    ``l1=0.2``, ``k=1``, ``l0=0.1``, ``steps=20000``, ``batch=1024``, ``lr=1e-3``, ``restarts=1``,
    ``resample_every=2500``, ``instances=[0]``, ``seed=0``, ``backend="auto"``, ``force=True``
    (``tms sae --help`` lists them). The GIL is released while it trains.

    >>> saes = tms.sae("results/sae/pentagon", out="runs/sae", steps=5000, backend="cpu")
    >>> saes["saes"][0]["scores"]["mmcs"]
    """
    text = _tms.sae([os.fspath(run), "--out", os.fspath(out)] + _flags(options))
    return _sae_arrays(json.loads(text))


def load_sae(dir: PathLike) -> Dict[str, Any]:
    """Reads ``DIR/sae.json`` (written by ``tms sae`` or :func:`sae`): the settings, and per SAE its
    toy ``instance``, ``kind``, ``latents``, weights (``w_enc`` and ``w_dec`` as [latents, m]
    float32 arrays, ``b_enc``, ``b_dec``, JumpReLU's ``threshold``), ``scores`` (``mmcs``,
    ``best_match`` as an array with NaN for features the toy model does not represent,
    ``dead_latents``, ``l0``, ``mse``, ``fraction_variance_explained``) and its ``loss_curve``.
    """
    return _sae_arrays(json.loads(_tms.load_sae(os.fspath(dir))))


def _sae_arrays(file: Dict[str, Any]) -> Dict[str, Any]:
    for entry in file["saes"]:
        for key in ("w_enc", "b_enc", "w_dec", "b_dec", "threshold"):
            if entry.get(key) is not None:
                entry[key] = np.asarray(entry[key], dtype=np.float32)
        scores = entry["scores"]
        scores["best_match"] = np.array([_nan(v) for v in scores["best_match"]])
    return file


def _flags(options: Dict[str, Any]) -> List[str]:
    """Keywords as the command line's flags: ``restarts=2`` → ``--restarts 2``, ``force=True`` →
    ``--force``, lists joined by commas; None and False are left out."""
    args: List[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


def devices() -> List[Dict[str, str]]:
    """The GPU adapters wgpu finds, best first (``tms devices``): each a dict with ``name``,
    ``backend``, ``device_type`` and the one-line ``description`` the CLI prints. Pass an adapter's
    index or name as ``adapter=`` to ``train``."""
    return _tms.devices()


@dataclass(frozen=True)
class Metrics:
    """The superposition metrics of every instance of a run (the library's ``tms::analysis``, as
    ``metrics.json`` records them); arrays have the instances on their first axis.

    Column W_i is feature i's direction in the hidden space. ``norms`` ‖W_i‖ [instances, n];
    ``superposition`` Σ_{j≠i} (Ŵ_i·W_j)² [instances, n]; ``dimensionality`` D_i = ‖W_i‖² /
    Σ_j (Ŵ_i·W_j)² [instances, n] (1 a dedicated dimension, 1/2 an antipodal pair, 2/5 a pentagon,
    0 not learned); ``dimensions_per_feature`` m / ‖W‖²_F [instances]; ``features_represented``
    (‖W_i‖ > ``represented_norm``), ``represented_in_superposition`` (of those, superposition >
    ``superposition_threshold``) and ``negative_biases`` (b_i < −``negative_bias``), [instances].
    """

    norms: np.ndarray
    superposition: np.ndarray
    dimensionality: np.ndarray
    dimensions_per_feature: np.ndarray
    features_represented: np.ndarray
    represented_in_superposition: np.ndarray
    negative_biases: np.ndarray
    represented_norm: float
    superposition_threshold: float
    negative_bias: float


class Run:
    """A trained run: what a run directory holds, as numpy arrays (instances on the first axis).

    Attributes:
        W: float32 [instances, m, n], the weights (column i is feature i's direction); W₁ of
            the untied ``abs`` model.
        W2: float32 [instances, n, m], the ``abs`` model's output weights W₂; None for the others.
        b: float32 [instances, n], the biases.
        density: float64 [instances], each instance's feature density 1 − S.
        importance: float32 [instances, n], each instance's feature importances I_i.
        loss_steps: int64 [log points], the steps at which the training loss was logged.
        losses: float32 [instances, log points], the training loss there (NaN where not finite).
        final_loss: float32 [instances], the training loss at the last step.
        eval_loss: float64 [instances], the loss on the held-out evaluation batch.
        setting, restart: int64 [instances], the distinct setting an instance is a restart of.
        best_of_setting: bool [instances], the restart of its setting with the lowest eval loss.
        diverged: bool [instances], instances whose loss or weights stopped being finite.
        model, features, hidden, steps: the experiment's kind and sizes.
        experiment: dict, the fully resolved experiment (config.json's ``experiment``).
        backend, device: where it was trained.
        data_stream: the version of the random data's layout it drew (2 since 2026-11-25; 1 before).
        metrics: ``Metrics``, the superposition metrics (tms::analysis).
    """

    def __init__(self, native: "_tms.NativeRun") -> None:
        self._native = native
        config = json.loads(native.config_json())
        results = json.loads(native.results_json())
        self.experiment: Dict[str, Any] = config["experiment"]
        self.backend: str = config["backend"]
        self.device: str = config["device"]
        self.tms_version: str = config["tms_version"]
        self.data_stream: int = config["data_stream"]
        self.model: str = results["model"]
        self.features: int = results["features"]
        self.hidden: int = results["hidden"]
        self.steps: int = results["steps"]
        runs = results["instances"]
        count = len(runs)
        w, b = native.weights()
        self.W: np.ndarray = np.frombuffer(w, "<f4").reshape(count, self.hidden, self.features).copy()
        self.b: np.ndarray = np.frombuffer(b, "<f4").reshape(count, self.features).copy()
        w2 = native.w2()
        self.W2: Optional[np.ndarray] = (
            None
            if w2 is None
            else np.frombuffer(w2, "<f4").reshape(count, self.features, self.hidden).copy()
        )
        column = lambda key, dtype: np.array([_nan(r[key]) for r in runs], dtype=dtype)
        self.density = column("density", np.float64)
        self.importance = np.array([r["importance"] for r in runs], np.float32).reshape(count, -1)
        curves = [r["loss_curve"] for r in runs]
        self.loss_steps = np.array([step for step, _ in curves[0]] if curves else [], np.int64)
        self.losses = np.array(
            [[_nan(loss) for _, loss in curve] for curve in curves], np.float32
        ).reshape(count, len(self.loss_steps))
        self.final_loss = column("final_loss", np.float32)
        self.eval_loss = column("eval_loss", np.float64)
        self.setting = column("setting", np.int64)
        self.restart = column("restart", np.int64)
        self.best_of_setting = column("best_of_setting", bool)
        self.diverged = column("diverged", bool)
        self._metrics: Optional[Metrics] = None

    @property
    def metrics(self) -> Metrics:
        """The superposition metrics of every instance (computed once, by the library)."""
        if self._metrics is None:
            m = json.loads(self._native.metrics_json())
            per = lambda key, dtype: np.array([i[key] for i in m["instances"]], dtype)
            count = len(m["instances"])
            self._metrics = Metrics(
                norms=per("norms", np.float64).reshape(count, -1),
                superposition=per("superposition", np.float64).reshape(count, -1),
                dimensionality=per("dimensionality", np.float64).reshape(count, -1),
                dimensions_per_feature=per("dimensions_per_feature", np.float64),
                features_represented=per("features_represented", np.int64),
                represented_in_superposition=per("represented_in_superposition", np.int64),
                negative_biases=per("negative_biases", np.int64),
                represented_norm=m["represented_norm"],
                superposition_threshold=m["superposition_threshold"],
                negative_bias=m["negative_bias"],
            )
        return self._metrics

    def gram(self) -> np.ndarray:
        """WᵀW per instance, [instances, n, n] (the paper's heat maps), in float64."""
        w = self.W.astype(np.float64)
        return np.einsum("imj,imk->ijk", w, w)

    def save(self, dir: PathLike, force: bool = False) -> None:
        """Writes the run's files (config.json, results.json, weights.safetensors, metrics.json)
        into ``dir``, as ``tms train --out`` does; refused (ValueError) when ``dir`` already holds
        results, unless ``force``. It writes the run as trained, whatever its arrays were changed to.
        """
        self._native.save(os.fspath(dir), force)

    def __len__(self) -> int:
        return len(self.density)

    def __repr__(self) -> str:
        return (
            f"<tms.Run {self.model} n={self.features} m={self.hidden}, {len(self)} instances, "
            f"{self.steps} steps on {self.device}>"
        )


def _nan(value: Optional[float]) -> float:
    """JSON's null (a value that was not finite) as NaN."""
    return float("nan") if value is None else value


def _to_json(value: Any) -> str:
    """Settings as JSON, numpy scalars and arrays included."""

    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        raise TypeError(f"cannot use {type(v).__name__} as a setting")

    return json.dumps(dict(value), default=plain, allow_nan=True)


class _Progress:
    """The progress report of one call: a tqdm bar (tqdm.auto: a widget in notebooks) when tqdm is
    installed, else one line rewritten on stderr when it is a terminal, or the caller's function.
    A new bar starts when a new run starts (``tms.reproduce`` trains several)."""

    def __init__(self, progress: ProgressArg) -> None:
        self.report: Optional[Callable[[int, int, float], Any]] = None
        if callable(progress):
            self.report = progress
        elif progress:
            try:
                from tqdm.auto import tqdm

                self.tqdm: Any = tqdm
                self.report = self.bar
            except ImportError:
                self.report = self.line if sys.stderr.isatty() else None
        self.open: Any = None  # the tqdm bar, or True for a line, of the current run
        self.total, self.last_step, self.last_time = 0, 0, 0.0

    def __enter__(self) -> Optional[Callable[[int, int, float], Any]]:
        return self.report

    def new_run(self, step: int, steps: int) -> bool:
        if self.open is None or step < self.last_step or steps != self.total:
            self.close()
            self.total, self.last_step = steps, 0
            return True
        return False

    def bar(self, step: int, steps: int, loss: float) -> None:
        if self.new_run(step, steps):
            self.open = self.tqdm(total=steps, unit="step", dynamic_ncols=True)
        self.open.update(step - self.last_step)
        self.open.set_postfix_str(f"mean loss {loss:.5f}")
        self.last_step = step
        if step == steps:
            self.close()

    def line(self, step: int, steps: int, loss: float) -> None:
        self.new_run(step, steps)
        self.open, self.last_step = True, step
        now = time.monotonic()
        if now - self.last_time > 0.2 or step == steps:
            sys.stderr.write(f"\r{step}/{steps} steps  mean loss {loss:.5f}")
            sys.stderr.flush()
            self.last_time = now
        if step == steps:
            self.close()

    def close(self) -> None:
        if self.open is True:
            sys.stderr.write("\n")
        elif self.open is not None:
            self.open.close()
        self.open = None

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass(frozen=True)
class _Setting:
    keyword: str
    flag: str
    help: str
    values: List[str]
    is_list: bool


#: The settings of ``tms train``, as the library declares them (name, flag, help, values, list).
_SETTINGS: Dict[str, _Setting] = {s[0]: _Setting(*s) for s in _tms.settings()}
_SETTINGS["instances"] = _Setting(
    "instances",
    "",
    "Instances given one by one, each a dict with its density and either importance (a list of n "
    "values) or importance_decay; replaces density (config file only on the command line).",
    [],
    False,
)


def _train_doc() -> str:
    lines = [
        "Trains every instance of an experiment, as ``tms train`` does, and returns the ``Run``.",
        "",
        "Settings are ``tms train``'s flags as keywords (``--importance-decay 0.5`` is",
        "``importance_decay=0.5``); any not given take the public notebook's defaults (the seed's",
        "basic-results experiment: ReLU model, n = 20, m = 5, seven densities, 10,000 steps). Bad",
        "settings raise ValueError with the command line's message, before anything is written.",
        "Results are bit-identical to ``tms train`` with the same settings on the same backend.",
        "",
        "Args:",
        "    config: a TOML config file (path) or a dict with the same fields; keywords win.",
    ]
    for s in _SETTINGS.values():
        text = f"{s.keyword}: {s.help.rstrip('.')}."
        text += f" One of: {', '.join(s.values)}." if s.values else ""
        text += " A number or a list." if s.is_list else ""
        lines += textwrap.wrap(text, 96, initial_indent="    ", subsequent_indent="        ")
    lines += [
        "    backend: 'auto' (a hardware GPU if wgpu finds one, else the CPU), 'gpu' or 'cpu'.",
        "    adapter: the GPU adapter, its index or a substring of its name (see ``devices()``).",
        "    devices: several devices sharing the sweep: 'all', or adapter indices/names and 'cpu'.",
        "    shard: 'K/N', train only shard K of N of the instances (defaults to a Slurm array task's).",
        "    out: a run directory to write the result files into (and checkpoints while training);",
        "        None trains in memory and writes nothing (``Run.save`` writes it later).",
        "    force: overwrite the results of an existing run directory ``out``.",
        "    checkpoint_every: with ``out``, write a checkpoint every this many steps (one is also",
        "        written every 5 minutes, and on Ctrl-C).",
        "    progress: True (a tqdm bar if tqdm is installed, else a line on stderr), False, or a",
        "        function f(step, steps, mean_loss) called after every chunk of steps.",
        "",
        "The GIL is released while training. Ctrl-C raises KeyboardInterrupt at the end of the",
        "current chunk of steps (``log_every`` steps, at most 1000); with ``out`` a checkpoint is written",
        "first, and ``tms.resume(out)`` (or ``tms train --resume out``) continues the run.",
        "",
        "Example:",
        "    >>> run = tms.train(steps=500, backend='cpu')",
        "    >>> run.W.shape",
        "    (7, 5, 20)",
    ]
    return "\n".join(lines)


train.__doc__ = _train_doc()
