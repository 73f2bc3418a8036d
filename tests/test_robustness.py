"""Nothing half-written, nothing silently wrong (the README's "Robustness" section).

* Kill during save: a forked writer re-saves an artifact in a loop, each version with its number in every file
  (tensors, config, extra files); it is SIGKILLed at a random moment and the artifact is loaded. A load must give one
  whole version: never tensors of one version beside the config of another. A few trials per artifact type in the
  default suite, 100 in the slow tier (`make test-slow`).
* The model cache: killed builds leave nothing behind, two processes loading into an empty cache both succeed.
* Offline: with only INTERPWB_OFFLINE=1 set, asking for a hub model makes no network attempt.
"""
import json, os, random, select, signal, socket, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest, torch
from interpwb.core import ArtifactError, load_artifact, cache_dir
from conftest import SLOW

ROOT = Path(__file__).resolve().parent.parent
TRIALS = 100 if SLOW else 4

# ---- the artifact types: a writer that saves version v, a reader that returns the version it finds (or fails) ----

def _sae(v:float):
    from interpwb.sae.ensemble import SAEEnsemble, SAEConfig
    ens = SAEEnsemble(SAEConfig(d_in=8, d_sae=32, k=4, n_saes=2, architecture="topk", meta=dict(version=v)))
    with torch.no_grad():
        for p in ens.parameters(): p.fill_(v)
    return ens

def _uniform(tensors, what) -> float:
    vals = torch.cat([t.float().flatten() for t in tensors])
    assert (vals == vals[0]).all(), f"{what}: tensors from more than one version"
    return vals[0].item()

def write_sae(folder, v): _sae(v).save(folder, files={"examples.json": json.dumps({"version": v})}, version=v)
def read_sae(folder):
    from interpwb.sae.ensemble import SAEEnsemble
    ens = SAEEnsemble.load(folder)
    _, cfg = load_artifact(folder)
    versions = {_uniform(list(ens.parameters()), "SAE"), cfg["version"], json.loads((Path(folder)/"examples.json").read_text())["version"]}
    assert len(versions) == 1, f"SAE ensemble mixes versions {versions}"
    return versions.pop()

def write_classifier(folder, v):
    from interpwb.steering.classifier import AttributeClassifier
    clf = AttributeClassifier(8, ["a", "b"], hidden=16, meta=dict(version=v, hook_point="blocks.0.hook_resid_post"))
    with torch.no_grad():
        for p in clf.parameters(): p.fill_(v)
    clf.save(folder)
def read_classifier(folder):
    from interpwb.steering.classifier import AttributeClassifier
    clf = AttributeClassifier.load(folder)
    versions = {_uniform(list(clf.parameters()), "classifier"), clf.meta["version"]}
    assert len(versions) == 1, f"classifier mixes versions {versions}"
    return versions.pop()

def write_saelens(folder, v): _sae(v).to_saelens(folder)
def read_saelens(folder):
    from interpwb.sae.ensemble import SAEEnsemble
    found = set()
    for sub in sorted(Path(folder).glob("sae_*")):   # each exported SAE is a unit of its own
        ens = SAEEnsemble.from_saelens(sub)
        versions = {_uniform([ens.W_enc, ens.W_dec, ens.b_enc, ens.b_dec], "SAELens export"), ens.cfg.meta["version"]}
        assert len(versions) == 1, f"{sub} mixes versions {versions}"
        found |= versions
    return max(found)

def write_pse(folder, v):
    from interpwb.simulators.pse import PSEResults
    from interpwb.simulators.simulation import Simulation
    sims = [Simulation("public_goods", ["s0", "s1"], ["contribute", "keep"], "contribute", torch.zeros(2, 2),
                       torch.full((2, 2), 0.5), "temperature", int(v), {"n_simulacra": 2}) for _ in range(20)]
    PSEResults({"version": v}, sims).save(Path(folder)/"pse.json")
def read_pse(folder):
    from interpwb.simulators.pse import PSEResults
    res = PSEResults.load(Path(folder)/"pse.json")
    versions = {res.config["version"]} | {float(s.seed) for s in res.sims}
    assert len(versions) == 1 and len(res.sims) == 20, f"PSE results mix versions {versions}"
    return versions.pop()

def write_feature_diff(folder, v):
    from interpwb.model_diff.feature_diff import FeatureDiff
    tabs = {t: pd.DataFrame({"version": [v] * 50}) for t in FeatureDiff.TABLES}
    FeatureDiff(**tabs, meta=dict(version=v, layers=[1, 2])).save(folder)
def read_feature_diff(folder):
    from interpwb.model_diff.feature_diff import FeatureDiff
    fd = FeatureDiff.load(folder)
    versions = {fd.meta["version"]} | {float(x) for t in FeatureDiff.TABLES for x in getattr(fd, t).version}
    assert len(versions) == 1, f"feature diff mixes versions {versions}"
    return versions.pop()

def write_store(folder, v):
    "Appends shard after shard (v is the shard's value); the reader checks shards, rows and metadata agree."
    from interpwb.activations import ActivationStore
    store = ActivationStore(folder) if (Path(folder)/"meta.json").exists() else ActivationStore.create(folder, d=4, model="m", hook_point="h", seed=0)
    store.append(torch.full((64, 4), float(len(store.meta["shards"]))), texts_done=len(store.meta["shards"]) + 1)
def read_store(folder):
    from interpwb.activations import ActivationStore
    store = ActivationStore(folder)
    n = len(store.meta["shards"])
    assert len(store) == 64 * n and store.meta["texts_done"] == n, (len(store), n, store.meta.get("texts_done"))
    for i in range(n): assert (store.shard(i) == i).all(), f"shard {i} holds another shard's rows"
    return float(n)

def write_checkpoint(folder, v):
    from interpwb.sae.checkpoint import save_checkpoint
    from interpwb.sae.trainer import SAETrainer, TrainConfig
    tr = SAETrainer(_sae(v), TrainConfig(n_saes=2, d_sae=32, k=4, steps=10)); tr.step_no = int(v)
    save_checkpoint(folder, tr, pd.DataFrame({"version": [v] * 10}))
def read_checkpoint(folder):
    latest = json.loads((Path(folder)/"latest.json").read_text())
    tensors, cfg = load_artifact(Path(folder)/latest["folder"])
    metrics = pd.read_csv(Path(folder)/latest["folder"]/"metrics.csv")
    versions = {float(cfg["step"]), float(latest["step"])} | set(metrics.version.astype(float))
    assert len(versions) == 1, f"checkpoint mixes versions {versions}"
    return versions.pop()

def _tiny_run(v):
    from interpwb.models import load_hf, add_lora, tiny_model, model_name
    from interpwb.rl.train import RLRun, RLConfig
    name = model_name(tiny_model())
    hf, tok = load_hf(cache_dir("models")/name)
    policy = add_lora(hf, r=2, alpha=4, last_layers=1)
    return RLRun(policy, tok, pd.DataFrame({"reward_mean": [v] * 5, "kl_per_token": [v] * 5}), RLConfig(), name, "test")
def write_adapter(folder, v, run=None):
    from interpwb.rl.train import save_tuned
    with torch.no_grad():
        for n, p in run.policy.named_parameters():
            if "lora_" in n: p.fill_(v)
    run.log["reward_mean"] = v
    save_tuned(run, folder)
def read_adapter(folder):
    tensors, cfg = load_artifact(folder, expect={"kind": "lora-adapter"})
    log = json.loads((Path(folder)/"log.json").read_text())
    versions = {_uniform(list(tensors.values()), "adapter"), cfg["final_reward_mean_last5"]} | {r["reward_mean"] for r in log}
    assert len(versions) == 1, f"adapter mixes versions {versions}"
    return versions.pop()

KINDS = {"sae_ensemble": (write_sae, read_sae), "classifier": (write_classifier, read_classifier),
         "saelens_export": (write_saelens, read_saelens), "pse_results": (write_pse, read_pse),
         "feature_diff": (write_feature_diff, read_feature_diff), "activation_store": (write_store, read_store),
         "checkpoint": (write_checkpoint, read_checkpoint), "adapter": (write_adapter, read_adapter)}

def _kill_trial(folder:Path, write, rng:random.Random, setup=None) -> tuple[float, float]:
    "Fork a writer that saves versions 1, 2, 3, ... into `folder`; SIGKILL it at a random moment; return (versions done, load time)."
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the writer: never returns into pytest
        code = 1
        try:
            os.close(r); torch.set_num_threads(1)
            extra = setup() if setup else {}
            v = 1.0
            while True:
                write(folder, v, **extra); os.write(w, b"."); v += 1
        except BaseException: pass
        finally: os._exit(code)
    os.close(w)
    ready, _, _ = select.select([r], [], [], 120)   # one whole version first: then a load always has one to give
    assert ready, "the writer made no save in 120 s"
    os.read(r, 1)
    time.sleep(rng.uniform(0, 0.15))
    os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)   # reaped: its leftovers belong to a dead writer
    done = 1 + len(os.read(r, 1 << 20)) if select.select([r], [], [], 0)[0] else 1
    os.close(r)
    return done

@pytest.mark.parametrize("kind", list(KINDS))
def test_a_killed_save_leaves_a_whole_version(kind, tmp_path, tiny):
    write, read = KINDS[kind]
    setup = (lambda: {"run": _tiny_run(0.0)}) if kind == "adapter" else None
    rng = random.Random(f"{kind}-kills")
    for trial in range(TRIALS if kind != "adapter" or SLOW else 2):   # an adapter trial loads a model: ~3 s
        folder = tmp_path/f"trial{trial}"/"artifact"
        done = _kill_trial(folder, write, rng, setup)
        got = read(folder)   # raises (the test fails) on any mix, damage or missing file
        assert got in (done, done + 1), (kind, got, done)   # the last whole save, or the one it was finishing when killed
        leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith(".") and "lock" not in p.name]
        if kind in ("sae_ensemble", "classifier", "feature_diff", "adapter"):   # a load cleans a dead writer's temporaries
            assert not leftovers, leftovers
        write(folder, 1000.0, **(setup() if setup else {}))   # and the next save succeeds over what the kill left
        assert read(folder) == (1000.0 if kind != "activation_store" else got + 1)
        assert not [p for p in folder.parent.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]   # nothing stale left

def test_bit_flip_in_a_saved_tensor_file_is_refused(tmp_path):
    write_sae(tmp_path/"a", 3.0)
    f = tmp_path/"a"/"tensors.safetensors"
    data = bytearray(f.read_bytes()); data[-5] ^= 0x01; f.write_bytes(bytes(data))   # inside the last tensor's values
    with pytest.raises(ArtifactError, match="tensors.safetensors is damaged or corrupt"): read_sae(tmp_path/"a")

# ---- the model cache ----

def _cache_with_embedded(tmp_path) -> Path:
    "An empty interpwb cache that shares the real cache's de-quantised embedded model (so a tiny build is quick)."
    from interpwb.models import EMBEDDED_MODEL, _embedded_folder
    real = _embedded_folder()
    root = tmp_path/"cache"; (root/"models").mkdir(parents=True)
    (root/"models"/EMBEDDED_MODEL).symlink_to(real, target_is_directory=True)
    return root

LOAD_TINY = ("import sys; from interpwb.models import tiny_model; m = tiny_model(n_layers=1, d_model=16, seed=int(sys.argv[1])); "
             "print('loaded', m.cfg.n_layers, m.cfg.d_model)")

def _python(code:str, *args:str, env:dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "INTERPWB_CACHE")} | env
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

@pytest.mark.parametrize("round_", range(10 if SLOW else 1))
def test_two_processes_load_into_an_empty_cache(tmp_path, round_):
    root = _cache_with_embedded(tmp_path)
    procs = [_python(LOAD_TINY, "7", env={"INTERPWB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "INTERPWB_THREADS": "1"}) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs): assert p.returncode == 0 and "loaded 1 16" in out, out[-3000:]
    assert sorted(p.name for p in (root/"models").iterdir() if not p.name.endswith(".lock")) == ["SmolLM2-135M-Instruct", "tiny-llama-L1-d16-s7"]

@pytest.mark.slow
def test_two_processes_dequantise_the_embedded_model_once(tmp_path):
    env = {"INTERPWB_CACHE": str(tmp_path/"cache"), "HF_HUB_OFFLINE": "1", "INTERPWB_THREADS": "1"}
    code = "from interpwb.models import load_model; m = load_model(); print('loaded', m.cfg.n_layers)"
    procs = [_python(code, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=1200)[0] for p in procs]
    for p, out in zip(procs, outs): assert p.returncode == 0 and "loaded 30" in out, out[-3000:]
    assert sum(out.count("De-quantising") for out in outs) == 1, outs

def test_a_killed_model_build_leaves_nothing_behind(tmp_path, monkeypatch):
    "SIGKILL while building a tiny model in an empty cache; the next load builds it and removes the dead temporary."
    root = _cache_with_embedded(tmp_path)
    monkeypatch.setenv("INTERPWB_CACHE", str(root))
    from interpwb.models import tiny_model
    for trial in range(10 if SLOW else 1):
        p = _python(LOAD_TINY, str(100 + trial), env={"INTERPWB_CACHE": str(root), "HF_HUB_OFFLINE": "1", "INTERPWB_THREADS": "1"})
        deadline = time.time() + 120
        while time.time() < deadline and not list((root/"models").glob(f".tiny-llama-L1-d16-s{100 + trial}.tmp-*")):
            time.sleep(0.01)   # wait until the build is under way ...
        time.sleep(random.Random(trial).uniform(0, 0.3))
        p.send_signal(signal.SIGKILL); p.wait()   # ... and kill it somewhere inside
        m = tiny_model(n_layers=1, d_model=16, seed=100 + trial)
        assert m.cfg.d_model == 16
        hidden = [q.name for q in (root/"models").iterdir() if q.name.startswith(".") and not q.name.endswith(".lock")]
        assert not hidden, hidden

# ---- offline ----

NETWORK_PROBE = """
import os, socket
attempts = []
def refuse(*a, **k):
    attempts.append(a[:2]); raise OSError("network attempt in an offline test")
socket.getaddrinfo = refuse; socket.create_connection = refuse; socket.socket.connect = lambda self, *a: refuse(*a)
before = dict(os.environ)
import interpwb.models as M, interpwb.steering.text_judge, interpwb.app.artifacts, interpwb.app.workbench
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
if before.get("INTERPWB_OFFLINE"):
    try: M.load_model("gpt2"); print("LOADED")
    except FileNotFoundError as e: print("REFUSED:", str(e)[:200])
print("ATTEMPTS", len(attempts)); print("CHANGED", changed)
"""

@pytest.mark.parametrize("offline", [True, False])
def test_offline_means_no_network_attempt_and_imports_leave_the_environment_alone(offline):
    "INTERPWB_OFFLINE=1 alone: a hub name is refused with 0 network attempts. Importing interpwb changes no variable the user did not ask for."
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("TRANSFORMERS_OFFLINE", "INTERPWB_OFFLINE")}
    if offline: env["INTERPWB_OFFLINE"] = "1"
    out = subprocess.run([sys.executable, "-c", NETWORK_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    log = out.stdout[-2000:] + out.stderr[-3000:]
    # the one mapping we do on purpose: the user's INTERPWB_OFFLINE=1 becomes the hub library's HF_HUB_OFFLINE=1
    assert f"CHANGED {['HF_HUB_OFFLINE'] if offline else []}" in out.stdout, log
    if offline: assert "REFUSED:" in out.stdout and "ATTEMPTS 0" in out.stdout, log
