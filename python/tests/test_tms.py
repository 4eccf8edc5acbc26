"""The Python package against the command line: same settings, same bits; same bad settings, same
messages; committed runs load; training releases the GIL and stops on Ctrl-C.

The CLI is the `tms` binary of this checkout: $TMS_BIN, else target/{release,debug}/tms (the newer).
Without one the comparisons skip, except under CI=true, where they fail.
"""

import inspect
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tms

REPO = Path(__file__).resolve().parents[2]


def cli_binary():
    if os.environ.get("TMS_BIN"):
        return Path(os.environ["TMS_BIN"])
    found = [p for p in (REPO / "target" / k / "tms" for k in ("release", "debug")) if p.exists()]
    if found:
        return max(found, key=lambda p: p.stat().st_mtime)
    if os.environ.get("CI") == "true":
        pytest.fail("no tms binary: build it (cargo build) or set TMS_BIN")
    pytest.skip("no tms binary (cargo build, or set TMS_BIN)")


def cli(*args):
    """Runs the CLI; returns (exit status, the last line of stderr: its error message)."""
    done = subprocess.run([str(cli_binary()), *args], capture_output=True, text=True)
    return done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


MODELS = tms._SETTINGS["model"].values  # every model kind the CLI has


@pytest.mark.parametrize("model", MODELS)
def test_results_equal_the_clis_bit_for_bit(tmp_path, model):
    args = dict(model=model, density=[1, 0.03], steps=300, log_every=50, eval_samples=2048, seed=3)
    status, err = cli(
        "train", "--backend", "cpu", "--model", model, "--density", "1,0.03", "--steps", "300",
        "--log-every", "50", "--eval-samples", "2048", "--seed", "3", "--out", str(tmp_path / "cli"),
    )
    assert status == 0, err
    in_memory = tms.train(backend="cpu", progress=False, **args)
    on_disk = tms.train(backend="cpu", progress=False, out=tmp_path / "py", **args)
    from_cli = tms.load(tmp_path / "cli")
    for run in (in_memory, on_disk):
        assert np.array_equal(bits(run.W), bits(from_cli.W))
        assert np.array_equal(bits(run.b), bits(from_cli.b))
        assert np.array_equal(bits(run.losses), bits(from_cli.losses))
        assert np.array_equal(run.eval_loss, from_cli.eval_loss)
    for name in ("weights.safetensors", "results.json", "metrics.json"):
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert in_memory.W.shape == (2, 5, 20) and in_memory.model == model


def test_the_seed_experiment_by_default():
    run = tms.train(steps=500, backend="cpu", progress=False)
    assert run.W.shape == (7, 5, 20) and run.b.shape == (7, 20)
    assert list(run.density) == [1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
    assert run.importance[0, 3] == np.float32(0.7**3)
    assert list(run.loss_steps) == [0, 100, 200, 300, 400, 499]
    assert run.losses.shape == (7, 6) and np.all(np.isfinite(run.eval_loss))


def test_config_file_dict_and_keywords_agree(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('features = 6\nhidden = 2\nsteps = 40\n[[instances]]\ndensity = 0.5\n'
                    'importance = [1, 1, 1, 0.5, 0.5, 0.5]\n')
    config = {"features": 6, "hidden": 2, "steps": 40,
              "instances": [{"density": 0.5, "importance": [1, 1, 1, 0.5, 0.5, 0.5]}]}
    runs = [tms.train(toml, backend="cpu", progress=False, seed=9),
            tms.train(config, backend="cpu", progress=False, seed=9)]
    assert all(np.array_equal(bits(r.W), bits(runs[0].W)) for r in runs)
    assert runs[0].W.shape == (1, 2, 6) and runs[0].experiment["seed"] == 9
    # A density among the keywords replaces the file's instances, as a flag does.
    assert len(tms.train(config, density=np.array([1.0, 0.1]), backend="cpu", progress=False)) == 2


BAD = [  # (keywords, flags): the same bad setting
    (dict(features=0), ["--features", "0"]),
    (dict(hidden=5000), ["--hidden", "5000"]),
    (dict(density=1.5), ["--density", "1.5"]),
    (dict(density=[1, 0]), ["--density", "1,0"]),
    (dict(lr=-1), ["--lr", "-1"]),
    (dict(steps=0), ["--steps", "0"]),
    (dict(importance_decay=0), ["--importance-decay", "0"]),
    (dict(weight_decay=-0.5), ["--weight-decay", "-0.5"]),
    (dict(extra_feature=2), ["--extra-feature", "2"]),
    (dict(extra_importance=[1, -1]), ["--extra-importance", "1,-1"]),
    (dict(restarts=0), ["--restarts", "0"]),
    (dict(shard="3/3"), ["--shard", "3/3"]),
]


@pytest.mark.parametrize("keywords,flags", BAD, ids=[str(k) for k, _ in BAD])
def test_bad_settings_raise_value_error_with_the_clis_message(tmp_path, keywords, flags):
    status, err = cli("train", "--backend", "cpu", *flags, "--out", str(tmp_path / "cli"))
    assert status == 2
    with pytest.raises(ValueError) as raised:
        tms.train(backend="cpu", out=tmp_path / "py", progress=False, **keywords)
    assert err == f"error: {raised.value}"
    assert not (tmp_path / "py").exists(), "nothing is written"


def test_bad_config_files_and_directories_get_the_clis_message(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("features = 20\nhiden = 5\n")
    done = tmp_path / "done"
    tms.train(features=3, hidden=1, density=1, steps=5, backend="cpu", out=done, progress=False)
    for flags, keywords in [
        (["--config", str(config)], dict(config=config)),
        (["--out", str(done)], dict(out=done)),
        (["--backend", "gpu", "--adapter", "no-such-adapter", "--steps", "5"],
         dict(backend="gpu", adapter="no-such-adapter", steps=5)),
    ]:
        status, err = cli("train", *flags)
        with pytest.raises((ValueError, RuntimeError)) as raised:
            tms.train(**{"backend": "cpu", "progress": False, **keywords})
        assert err == f"error: {raised.value}", flags
        assert (status == 2) == isinstance(raised.value, ValueError)
    with pytest.raises(ValueError, match="invalid backend: tpu"):
        tms.train(backend="tpu")
    with pytest.raises(ValueError, match="config: unknown field `hiden`"):
        tms.train({"hiden": 5})
    with pytest.raises(TypeError):
        tms.train(hiden=5)


def test_load_reads_the_committed_runs():
    for name, kind in [("linear", "linear"), ("relu", "relu")]:
        directory = REPO / "results" / "basic" / name
        run = tms.load(directory)
        results = json.loads((directory / "results.json").read_text())
        metrics = json.loads((directory / "metrics.json").read_text())
        assert run.model == kind and run.W.shape == (7, 5, 20) and run.data_stream == 2
        assert np.array_equal(run.W, np.array([i["W"] for i in results["instances"]], np.float32))
        assert np.array_equal(run.b, np.array([i["b"] for i in results["instances"]], np.float32))
        got = run.metrics
        for i, inst in enumerate(metrics["instances"]):
            assert got.features_represented[i] == inst["features_represented"]
            assert np.allclose(got.dimensionality[i], inst["dimensionality"], rtol=0, atol=1e-12)
            assert got.dimensions_per_feature[i] == pytest.approx(inst["dimensions_per_feature"])
        assert np.allclose(run.gram()[0], run.W[0].astype(float).T @ run.W[0].astype(float))
    relu = tms.load(REPO / "results" / "basic" / "relu")
    # The paper's picture: sparser features, more of them represented.
    assert relu.metrics.features_represented[0] == 5 and relu.metrics.features_represented[-1] > 10
    assert tms.load(REPO / "results" / "phase" / "n2-m1").W.shape[1:] == (1, 2)
    with pytest.raises(FileNotFoundError):
        tms.load(REPO / "results" / "basic")


def test_save_writes_a_run_directory_load_reads_back(tmp_path):
    run = tms.train(features=8, hidden=3, density=[1, 0.1], steps=50, backend="cpu", progress=False)
    run.save(tmp_path / "run")
    back = tms.load(tmp_path / "run")
    assert np.array_equal(bits(back.W), bits(run.W)) and np.array_equal(bits(back.b), bits(run.b))
    assert np.array_equal(back.losses, run.losses) and back.experiment == run.experiment
    with pytest.raises(ValueError, match="already holds results"):
        run.save(tmp_path / "run")
    run.save(tmp_path / "run", force=True)


def test_training_releases_the_gil():
    ticks, done = [], threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        start = time.monotonic()
        # One chunk of steps: with the GIL held the counter would stop for the whole call.
        tms.train(steps=1000, log_every=1000, backend="cpu", progress=False)
        end = time.monotonic()
    finally:
        done.set()
        counter.join()
    during = [t for t in ticks if start < t < end]
    assert end - start > 0.2
    assert len(during) > 20, f"{len(during)} ticks in {end - start:.2f} s of training"


def test_ctrl_c_raises_keyboard_interrupt_and_leaves_a_resumable_checkpoint(tmp_path):
    settings = dict(density=0.1, batch=256, steps=4000, log_every=50, backend="cpu")
    started, sent = threading.Event(), []

    def interrupt():
        started.wait()
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
        tms.train(out=tmp_path / "run", progress=lambda *_: started.set(), **settings)
    assert time.monotonic() - sent[0] < 1.0
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "run" / "results.json").exists()
    resumed = tms.resume(tmp_path / "run", backend="cpu", progress=False)
    whole = tms.train(progress=False, **settings)
    assert np.array_equal(bits(resumed.W), bits(whole.W))
    assert np.array_equal(bits(resumed.losses), bits(whole.losses))


def test_every_setting_is_a_documented_keyword():
    parameters = inspect.signature(tms.train).parameters
    for name, setting in tms._SETTINGS.items():
        assert name in parameters, f"tms.train lacks the setting {name}"
        assert f"    {name}: " in tms.train.__doc__
    stub = (Path(tms.__file__).parent / "_tms.pyi").read_text()
    assert "def train(" in stub and "class NativeRun" in stub


def test_reproduce_runs_the_clis_reproduction(tmp_path):
    runs = tms.reproduce("intro", steps=20, restarts=1, backend="cpu", out=tmp_path, progress=False)
    assert list(runs) == ["relu"] and runs["relu"].W.shape[1:] == (2, 5)
    assert (tmp_path / "intro.png").exists() and (tmp_path / "summary.md").exists()
    with pytest.raises(ValueError, match="grid"):
        tms.reproduce("phase", grid=1, out=tmp_path / "phase", progress=False)


def test_the_gpu_trainer_from_python_equals_the_clis(tmp_path):
    if not tms.devices():
        if os.environ.get("CI") == "true":
            pytest.fail("no GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
        pytest.skip("no GPU adapter")
    flags = ["--features", "6", "--hidden", "2", "--density", "0.3", "--steps", "30",
             "--log-every", "10", "--eval-samples", "256"]
    status, err = cli("train", "--backend", "gpu", *flags, "--out", str(tmp_path / "cli"))
    assert status == 0, err
    run = tms.train(features=6, hidden=2, density=0.3, steps=30, log_every=10, eval_samples=256,
                    backend="gpu", progress=False)
    assert run.backend == "gpu"
    assert np.array_equal(bits(run.W), bits(tms.load(tmp_path / "cli").W))


def test_sae_equals_the_clis_and_loads_the_committed_results(tmp_path):
    toy = REPO / "results" / "sae" / "pentagon"
    flags = ["--steps", "300", "--kind", "l1,topk", "--latents", "5", "--backend", "cpu"]
    status, message = cli("sae", str(toy), "--out", str(tmp_path / "cli"), *flags)
    assert status == 0, message
    ours = tms.sae(
        toy, out=tmp_path / "py", steps=300, kind=["l1", "topk"], latents=[5], backend="cpu"
    )
    theirs = tms.load_sae(tmp_path / "cli")
    assert [e["kind"] for e in ours["saes"]] == ["l1", "topk"]
    for a, b in zip(ours["saes"], theirs["saes"]):
        assert a["w_dec"].shape == (5, 2)
        for key in ("w_enc", "b_enc", "w_dec", "b_dec"):
            assert np.array_equal(bits(a[key]), bits(b[key])), key
        assert a["scores"]["mmcs"] == b["scores"]["mmcs"]
    committed = tms.load_sae(toy / "sae-l1")
    assert min(np.nanmin(e["scores"]["best_match"]) for e in committed["saes"]) > 0.9
    with pytest.raises(ValueError, match="already holds sae.json"):
        tms.sae(toy, out=tmp_path / "py", steps=10, backend="cpu")


def test_devices_lists_adapters():
    for adapter in tms.devices():
        assert {"name", "backend", "device_type", "description"} <= set(adapter)
