"""Device check: run interpwb's main code paths on CUDA with tiny random models and compare them with CPU.

    python scripts/gpu_check.py            # needs a CUDA GPU; prints one line per check, exits 1 if any fails

Not part of the test suite (CI has no GPU). Checks: the bridge's logits and `collect_activations` (CPU vs CUDA);
K-Steering and CAA fitted and generating on CUDA (batched, left-padded, steering hooks on the GPU) with the same
per-token edits as on CPU; SAE + MFR training on CUDA (finite losses, recovery of synthetic features close to the
CPU run); data-parallel SAE training under torchrun with the NCCL backend (1 process per GPU present).
"""
import os, subprocess, sys, tempfile, time, traceback
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("INTERPWB_PROGRESS", "0")
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).resolve().parent.parent
results = []

def check(name):
    "Decorator: run the check now, record PASS/FAIL with its time and message."
    def run(fn):
        t = time.perf_counter()
        try: msg = fn() or ""; ok = True
        except Exception as e: msg, ok = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}", False
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name} ({time.perf_counter() - t:.1f} s) {msg}", flush=True)
    return run

DEV = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cuda"  # --device cpu: dry-run the script itself
if DEV == "cuda" and not torch.cuda.is_available(): sys.exit("no CUDA device: this script checks the GPU path")
print(f"torch {torch.__version__}, device {DEV}" + (f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
      if DEV == "cuda" else ""), flush=True)
from interpwb.models import tiny_model, chat_prompt
from interpwb.activations import collect_activations
from interpwb.steering.ksteering import KSteering
from interpwb.steering.baselines import CAASteering
from interpwb.sae.synthetic import make_synthetic
from interpwb.sae.train import train_saes

cpu, gpu = tiny_model(device="cpu"), tiny_model(device=DEV)
texts = ["Tell me about the sea.", "A much longer question about why the sky is blue at noon?", "Hi"]

@check("bridge logits and collect_activations: device == CPU")
def _():
    toks = cpu.tokenizer(texts[1], return_tensors="pt")["input_ids"]
    with torch.no_grad(): a, b = cpu(toks), gpu(toks.to(DEV))
    assert torch.allclose(a, b.cpu(), atol=1e-3), (a - b.cpu()).abs().max()
    hooks = ["blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]
    ac, ag = collect_activations(cpu, texts, hooks, pool="mean"), collect_activations(gpu, texts, hooks, pool="mean")
    for h in hooks: assert torch.allclose(ac[h], ag[h], atol=1e-3), (h, (ac[h] - ag[h]).abs().max())
    return f"max |diff| logits {(a - b.cpu()).abs().max():.1e}"

toy = pd.DataFrame(dict(id=range(8), category="misc", question=[f"Tell me about item {i}." for i in range(8)]))
toy.attrs.update(name="toy", labels=["loud", "quiet"], instructions={"loud": "Answer LOUDLY.", "quiet": "Answer quietly."})

@check("K-Steering and CAA fit and generate on the device; edits match CPU")
def _():
    ks_g = KSteering.fit(gpu, toy, "blocks.1.hook_resid_post", source="prompts", epochs=5, seed=0)
    caa_g = CAASteering.fit(gpu, toy, "blocks.1.hook_resid_post")
    assert next(ks_g.classifier.parameters()).device.type == DEV
    base = ks_g.generate(texts, {}, max_new_tokens=6, batch_size=3)
    for st in (ks_g, caa_g):
        out = st.generate(texts, {"loud": 1.0}, alpha=3.0, max_new_tokens=6, batch_size=3)
        assert len(out) == 3 and out != base, (st.method, out, base)
        with st.steering({"loud": 1.0, "quiet": -0.5}, alpha=1.0) as states:
            gpu(gpu.tokenizer(chat_prompt(gpu, texts[0]), return_tensors="pt")["input_ids"].to(DEV))
        assert next(iter(states.values()))["edited"] > 0
    with tempfile.TemporaryDirectory() as d:  # the same classifier on CPU edits activations the same way
        ks_g.save(d); ks_c = KSteering.load(cpu, d)
        a = torch.randn(5, cpu.cfg.d_model)
        w = torch.tensor([1.0, -1.0])
        ec, eg = ks_c.edit(a, w, 0.5, steps=2), ks_g.edit(a.to(DEV), w.to(DEV), 0.5, steps=2)
        assert torch.allclose(ec, eg.cpu(), atol=1e-4), (ec - eg.cpu()).abs().max()
    return f"steered: {out[0]!r}"

@check("SAE + MFR training on the device recovers synthetic features like the CPU run")
def _():
    x, truth = make_synthetic(8192, d=32, n_features=64, kind="sharkey", seed=0)
    kw = dict(n_saes=2, d_sae=64, k=4, mfr_alpha=1.0, steps=300, lr=1e-2, batch_size=512, warmup_steps=50, seed=0,
              true_features=truth)
    ens_c, log_c = train_saes(x, device="cpu", **kw)
    ens_g, log_g = train_saes(x, device=DEV, **kw)
    assert next(ens_g.parameters()).device.type == DEV
    num = log_g.select_dtypes("number")
    assert np.isfinite(num.to_numpy(dtype=float)[~np.isnan(num.to_numpy(dtype=float))]).all()
    col = [c for c in log_g.columns if "truth" in c and "mmcs" in c.lower()]
    if not col: return f"trained; log columns {list(log_g.columns)[:12]}"
    c, g = log_c[col[0]].dropna().iloc[-1], log_g[col[0]].dropna().iloc[-1]
    assert abs(c - g) < 0.1 and g > 0.5, (c, g)
    return f"{col[0]}: CPU {c:.3f}, {DEV} {g:.3f}"

@check("torchrun SAE training (NCCL when 2+ GPUs)")
def _():
    n = torch.cuda.device_count() if DEV == "cuda" else 1
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
               "-m", "interpwb.sae.train", "--synthetic", "sharkey", "--n-samples", "4096", "--dim", "32",
               "--n-features", "64", "--n-saes", "2", "--d-sae", "64", "--k", "4", "--mfr-alpha", "1.0", "--steps", "50",
               "--lr", "1e-2", "--batch-size", "512", "--warmup-steps", "10", "--seed", "0", "--out", d]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])))
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert f"world={n}" in r.stdout, r.stdout[-1000:]
    return f"world={n}" + (", NCCL" if n > 1 else " (NCCL needs 2+ GPUs: one process on the GPU, no process group)")

print(f"{sum(results)}/{len(results)} checks passed")
sys.exit(0 if all(results) else 1)
