"""SAEs written by `SAEEnsemble.to_saelens` load in SAELens itself and reconstruct the same as in interpwb.

SAELens 6 needs transformer-lens < 4, so it lives in its own virtualenv (named by $INTERPWB_SAELENS_PYTHON, or made
here once, like `benchmarks/bench_saelens.py` does, which needs PyPI access). Slow tier (`make test-slow`); the
default suite checks the same files against an independent formula of SAELens's forward pass (test_sae_methods.py)."""
import json, os, subprocess, textwrap
from pathlib import Path
import pytest, torch
from safetensors.torch import save_file, load_file

ROOT = Path(__file__).resolve().parent.parent
PY = Path(os.environ.get("INTERPWB_SAELENS_PYTHON", ROOT/".cache"/"saelens-venv"/"bin"/"python"))

LOAD_AND_RUN = textwrap.dedent('''
    import json, sys, torch
    from safetensors.torch import load_file, save_file
    from sae_lens import SAE
    a = json.loads(sys.argv[1])
    x = load_file(a["x"])["x"]
    out = {}
    for i, folder in enumerate(a["folders"]):
        sae = SAE.load_from_disk(folder, device="cpu")
        with torch.no_grad(): out[f"recon_{i}"] = sae(x); out[f"codes_{i}"] = sae.encode(x)
        out[f"arch_{i}"] = torch.tensor([len(sae.cfg.architecture())])
    save_file({k: v.contiguous() for k, v in out.items()}, a["out"])
''')

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def saelens_python():
    if not PY.exists() or subprocess.run([str(PY), "-c", "import sae_lens"], capture_output=True).returncode:
        import sys; sys.path.insert(0, str(ROOT/"benchmarks"))
        from bench_saelens import saelens_python as make_venv   # builds .cache/saelens-venv once (needs PyPI)
        if "INTERPWB_SAELENS_PYTHON" in os.environ or make_venv(PY.parent.parent) is None:
            pytest.skip(f"no SAELens virtualenv at {PY}, and it could not be made here (no PyPI access)")
    return PY

@pytest.mark.parametrize("architecture", ["topk", "relu_l1"])
def test_saelens_loads_our_export_and_reconstructs_the_same(saelens_python, tmp_path, architecture):
    from interpwb.sae.ensemble import SAEConfig, SAEEnsemble
    from interpwb.sae.train import train_saes
    torch.manual_seed(0)
    data = torch.randn(2048, 32)
    ens, _ = train_saes(data, n_saes=2, d_sae=64, k=4, steps=30, batch_size=256, architecture=architecture,
                        seed=0, **({"l1_coeff": 1e-3} if architecture == "relu_l1" else {}))
    folders = ens.to_saelens(tmp_path/"export")
    x = torch.randn(64, 32)
    save_file({"x": x}, str(tmp_path/"x.safetensors"))
    arg = json.dumps({"x": str(tmp_path/"x.safetensors"), "folders": [str(f) for f in folders], "out": str(tmp_path/"out.safetensors")})
    r = subprocess.run([str(saelens_python), "-c", LOAD_AND_RUN, arg], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = load_file(str(tmp_path/"out.safetensors"))
    with torch.no_grad(): ours = ens(x.to(ens.device))
    recon = ours[0]  # forward returns (reconstructions [n_saes, batch, d_in], codes)
    for i in range(ens.n_saes):
        torch.testing.assert_close(theirs[f"recon_{i}"], recon[i].cpu(), atol=1e-4, rtol=1e-4)
        assert (theirs[f"codes_{i}"] != 0).sum(-1).float().mean() > 0  # the SAE is not dead in SAELens either
