"Data-parallel SAE + MFR training: 2 gloo processes under torchrun give the same result as 1 process on the same data."
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from interpwb.sae.ensemble import SAEEnsemble
from interpwb.sae.train import train_saes
from interpwb.sae.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(n_samples=2048, d=32, n_features=64, n_saes=2, d_sae=64, k=4, mfr_alpha=1.0, steps=20, lr=1e-2,
            batch_size=256, warmup_steps=5, seed=0)


def _torchrun(out: Path, nproc: int):
    torchrun = Path(sys.executable).parent/"torchrun"
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", "-m", "interpwb.sae.train",
           "--synthetic", "sharkey", "--n-samples", str(ARGS["n_samples"]), "--dim", str(ARGS["d"]),
           "--n-features", str(ARGS["n_features"]), "--n-saes", str(ARGS["n_saes"]), "--d-sae", str(ARGS["d_sae"]),
           "--k", str(ARGS["k"]), "--mfr-alpha", str(ARGS["mfr_alpha"]), "--steps", str(ARGS["steps"]),
           "--lr", str(ARGS["lr"]), "--batch-size", str(ARGS["batch_size"]), "--warmup-steps", str(ARGS["warmup_steps"]),
           "--seed", str(ARGS["seed"]), "--threads", "1", "--out", str(out)]
    env = dict(os.environ, INTERPWB_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)


@pytest.fixture(scope="module")
def single_process():
    x, truth = make_synthetic(ARGS["n_samples"], d=ARGS["d"], n_features=ARGS["n_features"], kind="sharkey", seed=0)
    kw = {k: v for k, v in ARGS.items() if k not in ("n_samples", "d", "n_features")}
    return train_saes(x, true_features=truth, **kw)


def test_two_gloo_processes_match_one_process(tmp_path, single_process):
    res = _torchrun(tmp_path/"ddp", 2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "world=2" in res.stdout
    ddp = SAEEnsemble.load(tmp_path/"ddp")
    ens, metrics = single_process
    # same parameters (up to float summation order over the two half-batches)
    for name, p in ens.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[name], p, atol=2e-4, rtol=1e-3, msg=f"{name} differs")
    # the global metrics logged by rank 0 are the whole batch's, not one shard's
    m2 = pd.read_csv(tmp_path/"ddp"/"metrics.csv")
    assert len(m2) == len(metrics)
    np.testing.assert_allclose(m2.mse.values, metrics.mse.values, atol=1e-5, rtol=1e-3)
    np.testing.assert_allclose(m2.l0.values, metrics.l0.values, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(m2.mmcs_to_truth.dropna().values, metrics.mmcs_to_truth.dropna().values, atol=1e-3)
    # and training did something: the MFR run pulled the two SAEs together
    last = metrics[metrics.step == metrics.step.max()]
    assert last.fvu.max() < metrics[metrics.step == 0].fvu.min()


def test_batch_not_divisible_by_processes_errors(tmp_path):
    out = tmp_path/"bad"
    torchrun = Path(sys.executable).parent/"torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "interpwb.sae.train",
           "--synthetic", "sharkey", "--n-samples", "512", "--dim", "32", "--n-features", "64", "--d-sae", "64",
           "--k", "4", "--steps", "2", "--batch-size", "255", "--out", str(out)]
    env = dict(os.environ, INTERPWB_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert res.returncode != 0
    assert "divisible by the number of processes (2)" in res.stdout + res.stderr
