"""Feature matching benchmarks: prints RATIOS from one run (machines are noisy; compare within a run only).

    python benchmarks/bench_matching.py                      # CPU-sized defaults (a few minutes on 2 cores)
    python benchmarks/bench_matching.py --device cuda --mfr-d-model 576 --batch 4096   # the issue's MFR sizes, on a GPU

1. One pair of dictionaries: SciPy's dense Hungarian (`match_features(method="dense")`: the cosine matrix, then
   `linear_sum_assignment`) vs the default `match_features` (top-k candidate graph, sparse exact solver, LP-duality
   certificate, dense fallback), at --sizes features (d = --d), for three kinds of pair: unrelated random unit rows,
   a noisy permuted copy, and a partly shared pair (--shared of B are noisy copies of A's features, the rest new: SAEs
   trained from different seeds). Reported: fastest of --reps for each (timed interleaved), their ratio, the cosine
   matrix alone (work both must do; on a CPU it bounds the ratio), and the optimality gap (matched-cosine sum short of
   the dense optimum, relative).
2. MFR step cost for --n-saes SAEs of 8 x --mfr-d-model latents: a plain training step vs a step with the exact
   Hungarian penalty whose assignments are recomputed every step, with the new matching and with the dense one.
   The SAEs are freshly initialised (unrelated dictionaries); after the warm-up step the penalty has pulled the matched
   pairs together, which already makes the assignment easier for SciPy, as it is in training. Also timed: the
   assignment of one pair of these dictionaries alone.
"""
import argparse, contextlib, os, time
import torch
import torch.nn.functional as F
from functools import partial
import interpwb.sae.mfr as mfr
from interpwb.core import set_threads
from interpwb.sae.matching import cosine_matrix, match_features
from bench_sae import _sync, trainer_for   # the same trainer and CUDA sync as the SAE benchmark (same folder)


def timed(f, device):
    "(result, seconds) of one call of `f`."
    _sync(device); t = time.perf_counter()
    out = f()
    _sync(device); return out, time.perf_counter() - t


def dictionary_pair(n, d, kind, noise, shared, device, g):
    "Unit-row dictionaries A, B [n, d]: 'random' (unrelated), 'noisy permutation' or 'partly shared' (B's first part copies A)."
    a = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    if kind == "random": return a.to(device), F.normalize(torch.randn(n, d, generator=g), dim=-1).to(device)
    b = a[torch.randperm(n, generator=g)] + noise / d ** 0.5 * torch.randn(n, d, generator=g)  # cosine ~ 1 / sqrt(1 + noise^2)
    if kind == "partly shared": b[int(shared * n):] = torch.randn(n - int(shared * n), d, generator=g)
    return a.to(device), F.normalize(b[torch.randperm(n, generator=g)], dim=-1).to(device)


def bench_pairs(args, device):
    print(f"\n== One pair: SciPy dense Hungarian vs match_features (sparse, certified); d={args.d}, device={device}, "
          f"threads={torch.get_num_threads()}, fastest of {args.reps}")
    g = torch.Generator().manual_seed(0)
    for n in args.sizes:
        for kind in ["random", "noisy permutation", "partly shared"]:
            a, b = dictionary_pair(n, args.d, kind, args.noise, args.shared, device, g)
            variants = {"cosines": lambda: cosine_matrix(a, b), "dense": lambda: match_features(a, b, method="dense"),
                        "new": lambda: match_features(a, b)}
            best, out = {name: float("inf") for name in variants}, {}
            for _ in range(args.reps):  # interleaved, so that drifting machine load hits every variant alike
                for name, f in variants.items():
                    out[name], t = timed(f, device)
                    best[name] = min(best[name], t)
            dense_sum, new_sum = out["dense"][2].double().sum().item(), out["new"][2].double().sum().item()
            one_to_one = len(out["new"][0].unique()) == len(out["new"][1].unique()) == n
            dense_beyond, new_beyond = best["dense"] - best["cosines"], best["new"] - best["cosines"]
            beyond = f"{dense_beyond / new_beyond:.1f}x" if new_beyond > 0.01 else "n/a"  # within timing noise
            print(f"{n} x {n} {kind:>17} (MMCS {dense_sum / n:.2f}): dense {best['dense']:.2f} s, new {best['new']:.2f} s "
                  f"-> {best['dense'] / best['new']:.1f}x faster; cosine matrix alone {best['cosines']:.2f} s, beyond it "
                  f"{dense_beyond:.2f} s vs {new_beyond:.2f} s ({beyond}); gap {(dense_sum - new_sum) / dense_sum:.1e}"
                  f"{'' if one_to_one else ' NOT ONE-TO-ONE'}", flush=True)


@contextlib.contextmanager
def dense_matching_in_mfr():
    "MFR's assignments computed by SciPy's dense Hungarian (the matching before the sparse solver)."
    fast = mfr.match_features
    mfr.match_features = partial(match_features, method="dense")
    try: yield
    finally: mfr.match_features = fast


def bench_mfr(args, device):
    d, d_sae, n = args.mfr_d_model, 8 * args.mfr_d_model, args.n_saes
    print(f"\n== MFR step, assignments recomputed every step: {n} SAEs ({n * (n - 1) // 2} pairs), d_model={d}, "
          f"d_sae={d_sae}, k={args.k}, batch={args.batch}, device={device}, threads={torch.get_num_threads()}")
    x = torch.randn(args.batch, d, device=device)
    every_step = lambda: mfr.MFRPenalty(1.0, "hungarian", warmup_steps=0, recompute_every=1)
    trainers = {"no MFR": (trainer_for(n, d, d_sae, args.k, device), contextlib.nullcontext),
                "MFR, new matching": (trainer_for(n, d, d_sae, args.k, device, every_step()), contextlib.nullcontext),
                "MFR, dense matching": (trainer_for(n, d, d_sae, args.k, device, every_step()), dense_matching_in_mfr)}
    for tr, matching in trainers.values():
        with matching(): tr.step(x)  # warm-up
    best = {name: float("inf") for name in trainers}
    for _ in range(args.mfr_reps):
        for name, (tr, matching) in trainers.items():
            with matching(): best[name] = min(best[name], timed(lambda: tr.step(x), device)[1])
    dicts = trainers["MFR, new matching"][0].ens.dictionaries()
    per_pair = {m: min(timed(lambda: match_features(dicts[0], dicts[1], method=m), device)[1] for _ in range(args.mfr_reps))
                for m in ["dense", "auto"]}
    print(f"one pair of these dictionaries: dense {per_pair['dense']:.3f} s, new {per_pair['auto']:.3f} s "
          f"({per_pair['dense'] / per_pair['auto']:.1f}x)")
    base = best["no MFR"]
    print(f"no-MFR step {base * 1e3:.0f} ms; MFR step with the new matching {best['MFR, new matching']:.2f} s "
          f"({best['MFR, new matching'] / base:.1f}x); with the dense matching {best['MFR, dense matching']:.2f} s "
          f"({best['MFR, dense matching'] / base:.1f}x) -> the new matching makes the MFR step "
          f"{best['MFR, dense matching'] / best['MFR, new matching']:.1f}x faster", flush=True)


def main():
    p = argparse.ArgumentParser(description="Feature matching benchmarks (ratios)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1536, 4608], help="features per dictionary")
    p.add_argument("--d", type=int, default=576, help="dictionary width for the one-pair benchmark")
    p.add_argument("--noise", type=float, default=0.75, help="noise of the copies (matched cosine ~ 1 / sqrt(1 + noise^2))")
    p.add_argument("--shared", type=float, default=0.67, help="fraction of B copied from A in the 'partly shared' pair")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--mfr-d-model", type=int, default=256, help="SAE input width for the MFR benchmark (latents: 8x)")
    p.add_argument("--n-saes", type=int, default=4)
    p.add_argument("--k", type=int, default=32, help="active latents per input")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--mfr-reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-pairs", action="store_true", help="skip the one-pair benchmark")
    p.add_argument("--no-mfr", action="store_true", help="skip the MFR step benchmark")
    args = p.parse_args()
    os.environ.setdefault("INTERPWB_PROGRESS", "0")
    set_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if not args.no_pairs: bench_pairs(args, device)
    if not args.no_mfr: bench_mfr(args, device)


if __name__ == "__main__":
    main()
