"""Data-parallel SAE (+ MFR) training with torch.distributed, launched by torchrun.

    torchrun --standalone --nproc_per_node 2 scripts/ddp_train_saes.py --synthetic grouped --steps 200 --out runs/mfr
    torchrun --standalone --nproc_per_node 4 scripts/ddp_train_saes.py --store path/to/activation_store --n-saes 10 ...
    python scripts/ddp_train_saes.py ...      # also works as a single process (no torchrun)

Every process builds the same global batch and trains on its equal shard; gradients are all-reduced (averaged), so
N processes compute the same updates as one process on the whole batch. Backend: NCCL when CUDA is available, else gloo.
Rank 0 writes the trained ensemble (`--out`, an interpwb artifact) and the per-step metrics (`--out/metrics.csv`).
"""
import argparse, os
from pathlib import Path
import torch
import torch.distributed as dist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", choices=["grouped", "sharkey"], help="train on interpwb.synthetic.make_synthetic data")
    src.add_argument("--acts", help="a .safetensors file holding an activation tensor [n, d] under the key 'acts'")
    src.add_argument("--store", help="an interpwb ActivationStore folder")
    p.add_argument("--n-samples", type=int, default=20000, help="synthetic rows")
    p.add_argument("--dim", type=int, default=256, help="synthetic width")
    p.add_argument("--n-features", type=int, default=512, help="synthetic true features")
    p.add_argument("--data-seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--n-saes", type=int, default=2)
    p.add_argument("--d-sae", type=int, default=None)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--architecture", default="topk")
    p.add_argument("--mfr-alpha", type=float, default=0.0)
    p.add_argument("--mfr-method", default="hungarian")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--recompute-every", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", default="cosine")
    p.add_argument("--batch-size", type=int, default=4096, help="GLOBAL batch, split across processes")
    p.add_argument("--dead-handling", default="reinit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--out", required=True, help="folder for the trained ensemble and metrics.csv (rank 0)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("INTERPWB_PROGRESS", "0")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = None
    if distributed:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local); device = f"cuda:{local}"
        dist.init_process_group(backend)
    from interpwb.sae_train import train_saes
    true = None
    if args.synthetic:
        from interpwb.synthetic import make_synthetic
        source, true = make_synthetic(args.n_samples, d=args.dim, n_features=args.n_features, kind=args.synthetic,
                                      seed=args.data_seed)
    elif args.acts:
        from safetensors.torch import load_file
        source = load_file(args.acts)["acts"].float()
    else:
        from interpwb.activations import ActivationStore
        source = ActivationStore(args.store)
    try:
        ens, metrics = train_saes(source, n_saes=args.n_saes, d_sae=args.d_sae, k=args.k, mfr_alpha=args.mfr_alpha,
                                  steps=args.steps, seed=args.seed, lr=args.lr, batch_size=args.batch_size,
                                  architecture=args.architecture, mfr_method=args.mfr_method,
                                  warmup_steps=args.warmup_steps, recompute_every=args.recompute_every,
                                  lr_decay=args.lr_decay, dead_handling=args.dead_handling, true_features=true,
                                  checkpoint_dir=args.checkpoint_dir, device=device)
        rank = dist.get_rank() if distributed else 0
        if rank == 0:
            world = dist.get_world_size() if distributed else 1
            ens.save(args.out, world_size=world)
            metrics.to_csv(Path(args.out)/"metrics.csv", index=False)
            last = metrics[metrics.step == metrics.step.max()]
            print(f"world={world} steps={args.steps} final mse per SAE: {last.mse.round(6).tolist()} -> {args.out}")
    finally:
        if distributed: dist.destroy_process_group()


if __name__ == "__main__":
    main()
