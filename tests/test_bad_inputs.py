"""Bad input gets a clear error, per module: a table of (what the user did, the error type, words the message must
contain). A row passes only if the call raises that type AND its message names the argument, the value or the file
and what is allowed - a bare `KeyError: 'shards'` or `ZeroDivisionError` fails it. The summary test counts them."""
import json, math
from pathlib import Path
import numpy as np
import pandas as pd
import pytest, torch
from interpwb.core import ArtifactError

NAN, INF = float("nan"), float("inf")

def _store(tmp, meta=None, corrupt_shard=False):
    from interpwb.activations import ActivationStore
    s = ActivationStore.create(tmp/"store", d=4, model="m", hook_point="h", seed=0)
    s.append(torch.ones(3, 4), texts_done=1)
    if meta is not None: (tmp/"store"/"meta.json").write_text(meta)
    if corrupt_shard:
        f = next((tmp/"store").glob("shard_*")); b = bytearray(f.read_bytes()); b[-3] ^= 0xFF; f.write_bytes(bytes(b))
    return tmp/"store"

def _artifact(tmp, config_text):
    from interpwb.core import save_artifact
    save_artifact(tmp/"art", {"x": torch.zeros(2)}, {"kind": "demo"})
    (tmp/"art"/"config.json").write_text(config_text)
    return tmp/"art"

def _csv(tmp, data:bytes):
    (tmp/"r.csv").write_bytes(data); return tmp/"r.csv"

def _gguf(tmp, data:bytes):
    (tmp/"m.gguf").write_bytes(data); return tmp/"m.gguf"

def _sae_folder(tmp):
    from interpwb.sae.ensemble import SAEEnsemble, SAEConfig
    SAEEnsemble(SAEConfig(d_in=8, d_sae=16, k=4)).save(tmp/"sae"); return tmp/"sae"

def _clf(tiny, norm):
    from interpwb.steering.classifier import AttributeClassifier
    from interpwb.steering.ksteering import KSteering
    clf = AttributeClassifier(tiny.cfg.d_model, ["a", "b"], meta=dict(hook_point="blocks.1.hook_resid_post", typical_norm=10.0))
    return KSteering(tiny, clf, typical_norm=norm)

def _train_clf(X, y, **kw):
    from interpwb.steering.classifier import train_classifier
    return train_classifier(X, y, ["a", "b", "c"], epochs=1, **kw)

X = torch.randn(30, 8); Y = torch.arange(3).repeat(10)

# (module, what the user did, call(tiny, tmp), error type, fragments that must all be in the message)
CASES = [
    ("core", "unknown name", lambda m, t: __import__("interpwb.core", fromlist=["x"]).check_choice("casul", ["casual"]), KeyError, ["'casul'", "Did you mean 'casual'"]),
    ("core", "config.json is a JSON list", lambda m, t: __import__("interpwb.core", fromlist=["x"]).load_artifact(_artifact(t, "[1, 2]")), ArtifactError, ["config.json", "JSON list"]),
    ("core", "config.json truncated", lambda m, t: __import__("interpwb.core", fromlist=["x"]).load_artifact(_artifact(t, '{"kind": "de')), ArtifactError, ["config.json", "not valid JSON"]),
    ("core", "artifact folder missing", lambda m, t: __import__("interpwb.core", fromlist=["x"]).load_artifact(t/"nothing"), ArtifactError, ["nothing", "missing"]),
    ("models", "max_length=-3", lambda m, t: __import__("interpwb.models", fromlist=["x"]).tokenize(m, "Hello", max_length=-3), ValueError, ["max_length", "-3", ">= 1"]),
    ("models", "empty text", lambda m, t: __import__("interpwb.models", fromlist=["x"]).tokenize(m, ["ok", ""]), ValueError, ["index [1]"]),
    ("models", "prompt longer than the context", lambda m, t: __import__("interpwb.models", fromlist=["x"]).tokenize(m, "go " * 2100), ValueError, ["context of 2048", "max_length"]),
    ("generation", "batch_size=0", lambda m, t: __import__("interpwb.generation", fromlist=["x"]).generate_texts(m, "Hi", batch_size=0), ValueError, ["batch_size", "got 0"]),
    ("generation", "max_new_tokens=0", lambda m, t: __import__("interpwb.generation", fromlist=["x"]).generate_texts(m, "Hi", max_new_tokens=0), ValueError, ["max_new_tokens", "got 0"]),
    ("models", "unknown hook point", lambda m, t: __import__("interpwb.models", fromlist=["x"]).find_hook(m, "blocks.1.hook_resid_pst"), KeyError, ["hook point", "Did you mean"]),
    ("models", "empty GGUF file", lambda m, t: __import__("interpwb.models", fromlist=["x"]).load_hf(_gguf(t, b"")), ArtifactError, ["m.gguf", "is empty"]),
    ("models", "header-only GGUF file", lambda m, t: __import__("interpwb.models", fromlist=["x"]).load_hf(_gguf(t, b"GGUF\x03\x00\x00\x00")), ArtifactError, ["m.gguf", "damaged or truncated"]),
    ("models", "not a GGUF file", lambda m, t: __import__("interpwb.models", fromlist=["x"]).load_hf(_gguf(t, b"PK\x03\x04zip")), ArtifactError, ["m.gguf", "not a GGUF file"]),
    ("activations", "no hook points", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["ok"], []), ValueError, ["at least one hook point"]),
    ("activations", "batch_size=0", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["ok"], "blocks.0.hook_resid_post", batch_size=0), ValueError, ["batch_size", "got 0"]),
    ("activations", "batch_size=1.5", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["ok"], "blocks.0.hook_resid_post", batch_size=1.5), ValueError, ["batch_size", "got 1.5"]),
    ("activations", "max_length=0", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["ok"], "blocks.0.hook_resid_post", max_length=0), ValueError, ["max_length", "got 0"]),
    ("activations", "max_length=2.5", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["ok"], "blocks.0.hook_resid_post", max_length=2.5), ValueError, ["max_length", "got 2.5"]),
    ("activations", "mean + drop_first on a one-token text", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["a long text here", "Hi"], "blocks.0.hook_resid_post", pool="mean", drop_first=True), ValueError, ["index [1]", "drop_first"]),
    ("activations", "empty text (user's index, not the sorted one)", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).collect_activations(m, ["a much longer text than the rest", "", "mid text"], "blocks.0.hook_resid_post"), ValueError, ["index [1]"]),
    ("activations", "store metadata without shards", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).ActivationStore(_store(t, meta='{"d": 4, "dtype": "float16", "n_rows": 3}')), ArtifactError, ["meta.json", "shards missing"]),
    ("activations", "store metadata truncated", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).ActivationStore(_store(t, meta='{"d": 4, "dty')), ArtifactError, ["meta.json", "corrupt"]),
    ("activations", "corrupt store shard", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).ActivationStore(_store(t, corrupt_shard=True)).shard(0), ArtifactError, ["shard_", "checksum"]),
    ("activations", "NaN rows appended", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).ActivationStore(_store(t)).append(torch.full((2, 4), NAN)), ValueError, ["non-finite"]),
    ("activations", "rows of the wrong width", lambda m, t: __import__("interpwb.activations", fromlist=["x"]).ActivationStore(_store(t)).append(torch.ones(2, 5)), ValueError, ["width 4", "(2, 5)"]),
    ("steering", "NaN activation in training data", lambda m, t: _train_clf(torch.where(torch.arange(30)[:, None] == 4, NAN, X), Y), ValueError, ["non-finite", "row(s) [4]"]),
    ("steering", "no training rows", lambda m, t: _train_clf(X[:0], Y[:0]), ValueError, ["got shape (0, 8)"]),
    ("steering", "one class only", lambda m, t: _train_clf(X, torch.zeros(30, dtype=torch.long)), ValueError, ["one class only"]),
    ("steering", "everything held out", lambda m, t: _train_clf(X, Y, val_frac=1.0), ValueError, ["No training rows", "val_frac"]),
    ("steering", "label index out of range", lambda m, t: _train_clf(X, Y + 1), ValueError, ["labels must be 0..2"]),
    ("steering", "typical_norm NaN", lambda m, t: _clf(m, NAN), ValueError, ["typical_norm", "nan"]),
    ("steering", "typical_norm negative", lambda m, t: _clf(m, -3.0), ValueError, ["typical_norm", "> 0", "-3.0"]),
    ("steering", "typical_norm 0 (not 'unset')", lambda m, t: _clf(m, 0.0), ValueError, ["typical_norm", "> 0", "0.0"]),
    ("steering", "alpha NaN", lambda m, t: _clf(m, 10.0).generate("Hi", {"a": 1.0}, alpha=NAN, max_new_tokens=2), ValueError, ["alpha", "nan"]),
    ("steering", "weight out of [-1, 1]", lambda m, t: _clf(m, 10.0).generate("Hi", {"a": 2.0}, max_new_tokens=2), ValueError, ["'a'", "[-1, 1]", "2.0"]),
    ("steering", "unknown attribute", lambda m, t: _clf(m, 10.0).generate("Hi", {"c": 1.0}, max_new_tokens=2), KeyError, ["attribute 'c'", "Known: a, b"]),
    ("steering", "decay 0", lambda m, t: _clf(m, 10.0).generate("Hi", {"a": 1.0}, decay=0, max_new_tokens=2), ValueError, ["decay", "> 0"]),
    ("sae", "d_sae=0", lambda m, t: __import__("interpwb.sae.ensemble", fromlist=["x"]).SAEConfig(d_in=8, d_sae=0), ValueError, ["d_sae", ">= 1", "0"]),
    ("sae", "negative l1_coeff", lambda m, t: __import__("interpwb.sae.ensemble", fromlist=["x"]).SAEConfig(d_in=8, d_sae=16, l1_coeff=-1.0), ValueError, ["l1_coeff", ">= 0", "-1.0"]),
    ("sae", "NaN mfr_alpha", lambda m, t: __import__("interpwb.sae.trainer", fromlist=["x"]).TrainConfig(mfr_alpha=NAN), ValueError, ["mfr_alpha", "nan"]),
    ("sae", "negative mfr_alpha", lambda m, t: __import__("interpwb.sae.trainer", fromlist=["x"]).TrainConfig(mfr_alpha=-1.0), ValueError, ["mfr_alpha", "-1.0"]),
    ("sae", "d_sae=0 in a training run", lambda m, t: __import__("interpwb.sae.trainer", fromlist=["x"]).TrainConfig(d_sae=0), ValueError, ["d_sae", ">= 1"]),
    ("sae", "empty training tensor", lambda m, t: __import__("interpwb.sae.train", fromlist=["x"]).train_saes(torch.zeros(0, 8), steps=2), ValueError, ["got shape (0, 8)"]),
    ("sae", "NaN in training activations", lambda m, t: __import__("interpwb.sae.train", fromlist=["x"]).train_saes(torch.full((64, 8), NAN), steps=2), ValueError, ["NaN or inf"]),
    ("sae", "unknown architecture", lambda m, t: __import__("interpwb.sae.ensemble", fromlist=["x"]).SAEConfig(d_in=8, d_sae=16, architecture="topkk"), KeyError, ["'topkk'", "Did you mean"]),
    ("sae", "load an SAE with another width", lambda m, t: __import__("interpwb.sae.ensemble", fromlist=["x"]).SAEEnsemble.load(_sae_folder(t), expect={"d_in": 576}), ArtifactError, ["d_in=8", "d_in=576 was expected"]),
    ("sae", "EEG segments with stride 0", lambda m, t: __import__("interpwb.sae.eeg", fromlist=["x"]).segment(np.zeros((1, 500)), 100, stride=0), ValueError, ["stride", "> 0", "got 0"]),
    ("rl", "clip=-2", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).TokenReward.from_mapping({"good": 1.0}, m.tokenizer, clip=-2), ValueError, ["clip", "> 0", "-2"]),
    ("rl", "empty word in the mapping", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).TokenReward.from_mapping({"good": 1.0, "": 2.0}, m.tokenizer), ValueError, ["empty word"]),
    ("rl", "only multi-word entries", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).TokenReward.from_mapping({"not bad": 1.0}, m.tokenizer), ValueError, ["'not bad'", "single token"]),
    ("rl", "duplicate tokens with different rewards", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).TokenReward.from_mapping({"Good": 1.0, "good": -1.0}, m.tokenizer), ValueError, ["'Good', 'good'", "duplicates="]),
    ("rl", "Latin-1 CSV", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).read_reward_mapping(_csv(t, "café,1\n".encode("latin-1"))), ValueError, ["r.csv", "not UTF-8"]),
    ("rl", "a reward that is not a number", lambda m, t: __import__("interpwb.rl.reward", fromlist=["x"]).read_reward_mapping(_csv(t, b"token,reward\ngood,lots\n")), ValueError, ["'good' -> 'lots'"]),
    ("rl", "group of one sample", lambda m, t: __import__("interpwb.rl.train", fromlist=["x"]).RLConfig(group_size=1), ValueError, ["group_size", ">= 2"]),
    ("simulators", "fit_trend with NaN", lambda m, t: __import__("interpwb.simulators.pse", fromlist=["x"]).fit_trend([1, 2, 3], [0.2, NAN, 0.1]), ValueError, ["NaN", "position(s) [1]"]),
    ("simulators", "probability out of range", lambda m, t: __import__("interpwb.simulators.pse", fromlist=["x"]).fit_trend([1, 2, 3], [0.2, 1.5, 0.1]), ValueError, ["[0, 1]", "1.5"]),
    ("simulators", "truncated PSE cache", lambda m, t: __import__("interpwb.simulators.pse", fromlist=["x"]).PSEResults.load(_csv(t, b'{"config": {"mod')), ArtifactError, ["r.csv", "not readable PSE results"]),
    ("simulators", "unknown scenario", lambda m, t: __import__("interpwb.simulators.pse", fromlist=["x"]).run_pse(m, ["public_good"], cache=False), KeyError, ["'public_good'", "Did you mean"]),
    ("simulators", "temperature NaN", lambda m, t: __import__("interpwb.simulators.simulation", fromlist=["x"]).select(torch.zeros(2, 3), "temperature", temperature=NAN), ValueError, ["temperature", "nan"]),
    ("model_diff", "negative crosscoder l1", lambda m, t: __import__("interpwb.model_diff.crosscoder", fromlist=["x"]).train_crosscoder(
        __import__("interpwb.model_diff.pairs", fromlist=["x"]).PairActivations(torch.ones(4, 8), torch.ones(4, 8), torch.zeros(4, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long), ["t"], dict(base="a", tuned="b", hook_point="h")), 16, l1_coeff=-1.0),
        ValueError, ["l1_coeff", ">= 0", "-1.0"]),
]

@pytest.mark.parametrize("module,what,call,error,words", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(module, what, call, error, words, tiny, tmp_path):
    with pytest.raises(error) as e: call(tiny, tmp_path)
    msg = str(e.value.args[0]) if e.value.args else str(e.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"{module}: {what}: the message {msg!r} does not say {missing}"

def test_every_module_has_bad_input_rows():
    modules = {c[0] for c in CASES}
    assert modules == {"core", "models", "generation", "activations", "steering", "sae", "rl", "simulators", "model_diff"}, modules
