"""Per-SAE training throughput: interpwb's `SAETrainer` vs SAELens's `SAETrainer`, same activations, same SAE size,
batch and optimizer (Adam). Prints the ratio of step times measured side by side in one run (machines are noisy).

    python benchmarks/bench_saelens.py                 # 576 -> 4608, k 32, batch 4096, 2 threads (CPU)
    python benchmarks/bench_saelens.py --device cuda   # on a GPU (both sides)

SAELens 6 needs transformer-lens < 4, so it cannot share interpwb's environment: the first run makes a virtualenv
for it under .cache/saelens-venv (needs PyPI access once; torch is pinned to the version running this script).
Both sides train a TopK SAE with an untied encoder/decoder and a decoder bias on REAL residual-stream activations of
the embedded model (saved once to .cache/bench/; both processes read the same file). One "step" is each library's own
training step: forward, loss, backward, optimizer step (SAELens: `SAETrainer._train_step`, which also clips the grad
norm and updates its dead-latent counters; interpwb: `SAETrainer.step`, which also updates its latent statistics).
Rounds alternate between the two so that drifting machine load hits both alike; the fastest step of each side counts.
"""
import argparse, json, os, subprocess, sys, textwrap, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
SAELENS_VERSION = "6.54.12"

WORKER = textwrap.dedent('''
    import json, sys, time, torch
    from safetensors.torch import load_file
    import sae_lens
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer
    a = json.loads(sys.argv[1])
    torch.set_num_threads(a["threads"]); torch.manual_seed(0)
    x = load_file(a["acts"])["acts"][: a["batch"]].to(a["device"])
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=a["d_in"], d_sae=a["d_sae"], k=a["k"], device=a["device"]))
    cfg = SAETrainerConfig(total_training_samples=a["batch"] * 10**6, train_batch_size_samples=a["batch"],
                           lr=a["lr"], lr_end=a["lr"] / 10, device=a["device"])
    trainer = SAETrainer(cfg, sae, data_provider=iter(()))
    def sync():
        if a["device"].startswith("cuda"): torch.cuda.synchronize()
    trainer._train_step(sae, x)  # warm-up
    times = []
    for _ in range(a["reps"]):
        sync(); t = time.perf_counter(); trainer._train_step(sae, x); sync(); times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "version": sae_lens.__version__, "torch": torch.__version__}))
''')


def saelens_python(venv:Path) -> Path|None:
    "The virtualenv's python with SAELens installed (made on first use); None if it cannot be made (offline)."
    py = venv/"bin"/"python"
    if py.exists() and subprocess.run([str(py), "-c", "import sae_lens"], capture_output=True).returncode == 0: return py
    print(f"[bench] making a virtualenv for SAELens {SAELENS_VERSION} in {venv} (once; needs PyPI)", flush=True)
    torch_pin = "torch==" + torch.__version__.split("+")[0]
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", torch_pin, f"sae-lens=={SAELENS_VERSION}", "safetensors"], check=True)
    except subprocess.CalledProcessError as e:
        print(f"[bench] skipped: could not install SAELens into {venv} ({e}); this benchmark needs PyPI once."); return None
    return py


def real_activations(path:Path, hook:str, n_rows:int) -> Path:
    "Residual-stream activations of the embedded model at `hook` (attention-sink position dropped), saved once."
    from safetensors.torch import load_file, save_file
    if path.exists() and load_file(str(path))["acts"].shape[0] >= n_rows: return path
    from interpwb.models import load_model
    from interpwb.activations import collect_activations
    from interpwb.app.artifacts import app_corpus
    model = load_model()
    texts, rows, got = app_corpus(), [], 0
    for i in range(0, len(texts), 16):
        a = collect_activations(model, texts[i:i+16], [hook], pool="all", drop_first=True)[hook]
        rows.append(a.reshape(-1, a.shape[-1])); got += rows[-1].shape[0]
        if got >= n_rows: break
    acts = torch.cat(rows)[:n_rows].float().contiguous()
    if acts.shape[0] < n_rows: raise RuntimeError(f"only {acts.shape[0]} activation rows from the corpus; need {n_rows}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"acts": acts}, str(path))
    return path


def time_interpwb(a:dict) -> list[float]:
    from safetensors.torch import load_file
    from interpwb.sae.ensemble import SAEConfig, SAEEnsemble
    from interpwb.sae.trainer import SAETrainer
    torch.manual_seed(0)
    x = load_file(a["acts"])["acts"][: a["batch"]].to(a["device"])
    ens = SAEEnsemble(SAEConfig(d_in=a["d_in"], d_sae=a["d_sae"], k=a["k"], n_saes=1, architecture="topk")).to(a["device"])
    tr = SAETrainer(ens, steps=10**6, lr=a["lr"])
    sync = (lambda: torch.cuda.synchronize()) if a["device"].startswith("cuda") else (lambda: None)
    tr.step(x)  # warm-up (also initialises b_dec from the batch mean)
    times = []
    for _ in range(a["reps"]):
        sync(); t = time.perf_counter(); tr.step(x); sync(); times.append(time.perf_counter() - t)
    return times


def main():
    p = argparse.ArgumentParser(description="interpwb vs SAELens: per-SAE training step time (ratio)")
    p.add_argument("--d-in", type=int, default=576)
    p.add_argument("--d-sae", type=int, default=4608)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--reps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (SAELens, interpwb, SAELens, ...)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hook", default="blocks.15.hook_resid_post")
    p.add_argument("--device", default="cpu")
    p.add_argument("--venv", default=str(ROOT/".cache"/"saelens-venv"))
    args = p.parse_args()
    os.environ.setdefault("INTERPWB_PROGRESS", "0"); os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    py = saelens_python(Path(args.venv))
    if py is None: return
    acts = real_activations(ROOT/".cache"/"bench"/f"acts_{args.hook}.safetensors", args.hook, args.batch)
    a = dict(d_in=args.d_in, d_sae=args.d_sae, k=args.k, batch=args.batch, lr=args.lr, reps=args.reps,
             threads=args.threads, device=args.device, acts=str(acts))
    ours, theirs, info = [], [], {}
    for r in range(args.rounds):
        out = subprocess.run([str(py), "-c", WORKER, json.dumps(a)], capture_output=True, text=True)
        if out.returncode: raise RuntimeError(f"SAELens worker failed:\n{out.stderr[-3000:]}")
        info = json.loads(out.stdout.strip().splitlines()[-1]); theirs += info["times"]
        ours += time_interpwb(a)
        print(f"round {r+1}: SAELens min {min(info['times'])*1e3:.0f} ms/step, interpwb min {min(ours[-args.reps:])*1e3:.0f} ms/step", flush=True)
    t_them, t_us = min(theirs), min(ours)
    print(f"\nTopK SAE {args.d_in} -> {args.d_sae}, k {args.k}, batch {args.batch}, Adam, {args.device}, "
          f"{args.threads} threads; SAELens {info['version']} (torch {info['torch']}) vs interpwb (torch {torch.__version__})")
    print(f"SAELens  {t_them*1e3:.0f} ms/step ({args.batch/t_them:,.0f} rows/s)")
    print(f"interpwb {t_us*1e3:.0f} ms/step ({args.batch/t_us:,.0f} rows/s)")
    print(f"interpwb throughput / SAELens throughput = {t_them/t_us:.2f}x  (target >= 1.2x)")


if __name__ == "__main__":
    main()
