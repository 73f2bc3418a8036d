"""Generation runs on the plain Hugging Face model behind the TransformerLens bridge (HF `generate`, KV cache, the
bridge's hooks relayed from the HF modules) and gives exactly what the bridge's own loop gives: the same text and the
same hidden states at every step, for every steering method, position mode, several layers, one prompt and a
left-padded batch. Each mapped hook point sees what `run_with_cache` sees; a hook that cannot be mapped sends generation
back through the bridge; seeded sampling is reproducible."""
import gc, weakref
import pytest, torch
from interpwb.models import chat_prompt, tiny_model, tokenize
from interpwb.generation import bridge_generation, generate_texts
from interpwb.plain import hf_model, hf_site
from interpwb.steering.base import Steerer
from interpwb.steering.classifier import train_classifier
from interpwb.steering.ksteering import KSteering
from interpwb.steering.baselines import CAASteering, LinearSteering

HOOK, LABELS = "blocks.1.hook_resid_post", ["a", "b", "c"]
WATCHED = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]   # the stream compared step by step
ONE = ["Tell me about rivers."]
THREE = ["Hi", "A much longer question about rivers, their sources and the seas they reach?", "Why is the sky blue?"]

def planted(d:int, n:int=120, seed:int=0):
    "Activations [3n, d] of three labels, label k = noise + 50 + 3 * e_k (as tests/test_steering_methods.py plants them)."
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    return torch.randn(3 * n, d, generator=g) + 50 + 3 * torch.eye(d)[y], y

@pytest.fixture(scope="module")
def steerers(tiny):
    "Every method on the tiny model: K-Steering (MLP classifier), linear, CAA, and the base class (unsteered)."
    X, y = planted(tiny.cfg.d_model)
    meta = dict(model=tiny.cfg.model_name, hook_point=HOOK)
    clf = {kind: train_classifier(X, y, LABELS, kind=kind, epochs=40, lr=1e-2, val_frac=0.0, meta=meta) for kind in ("mlp", "linear")}
    vectors = torch.stack([X[y == k].mean(0) - X[y != k].mean(0) for k in range(3)])
    return {"none": Steerer(tiny, HOOK, LABELS, typical_norm=1.0), "k-steering": KSteering(tiny, clf["mlp"]),
            "linear": LinearSteering(tiny, clf["linear"]),
            "caa": CAASteering(tiny, HOOK, LABELS, vectors, X.mean(0), typical_norm=4.0, meta=dict(source="test"))}

def count_engines(model, monkeypatch) -> dict:
    "Counts which generation loop runs: {'hf': calls of the plain model's generate, 'bridge': calls of the bridge's}."
    calls = {"hf": 0, "bridge": 0}
    for key, obj in (("hf", hf_model(model)), ("bridge", model)):
        def counted(*a, _inner=obj.generate, _key=key, **k): calls[_key] += 1; return _inner(*a, **k)
        monkeypatch.setattr(obj, "generate", counted)
    return calls

@pytest.fixture
def engines(tiny, monkeypatch): return count_engines(tiny, monkeypatch)

def run_watched(model, run):
    "The result of `run()` and every hidden state the WATCHED hook points saw while it ran."
    seen = []
    record = lambda x, hook: seen.append((hook.name, x.detach().clone()))
    with model.hooks(fwd_hooks=[(h, record) for h in WATCHED]): out = run()
    return out, seen

def assert_same_run(model, run, engines, fast_engine="hf"):
    "`run()` gives the same text and the same hidden states at every step on the fast path and through the bridge."
    engines.update(hf=0, bridge=0)
    fast, fast_seen = run_watched(model, run)
    assert engines[fast_engine] > 0 and (fast_engine == "bridge" or engines["bridge"] == 0), engines
    with bridge_generation(): slow, slow_seen = run_watched(model, run)
    assert engines["bridge"] > 0
    assert fast == slow
    assert [(n, x.shape) for n, x in fast_seen] == [(n, x.shape) for n, x in slow_seen]
    for (name, a), (_, b) in zip(fast_seen, slow_seen): torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    return fast

# ---------- the mapping from hook names to HF modules ----------
@pytest.mark.parametrize("name", [f"blocks.{l}.{h}" for l in (0, 1) for h in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out")])
def test_each_mapped_hook_point_sees_the_activation_run_with_cache_returns(tiny, name):
    toks, _ = tokenize(tiny, chat_prompt(tiny, "Tell me about rivers."))
    want = tiny.run_with_cache(toks, names_filter=[name])[1][name]
    module, side = hf_site(tiny, name)
    seen = {}
    grab = ((lambda m, args: seen.update(x=args[0])) if side == "input" else
            (lambda m, args, out: seen.update(x=out[0] if isinstance(out, tuple) else out)))
    handle = module.register_forward_pre_hook(grab) if side == "input" else module.register_forward_hook(grab)
    try: hf_model(tiny)(toks)
    finally: handle.remove()
    assert torch.equal(seen["x"], want)
    # and through the relay, in generation: the prefill call of generate_texts sees the same activation
    calls = []
    with tiny.hooks(fwd_hooks=[(name, lambda x, hook: calls.append(x.detach().clone()))]):
        generate_texts(tiny, chat_prompt(tiny, "Tell me about rivers."), max_new_tokens=2)
    assert torch.equal(calls[0], want) and len(calls) == 2 and calls[1].shape[1] == 1

def test_the_plain_model_shares_the_bridge_weights_and_computes_its_logits(tiny):
    toks, _ = tokenize(tiny, chat_prompt(tiny, "Hi"))
    plain = hf_model(tiny)
    assert hf_model(tiny) is plain                                   # built once per bridge
    assert not any("Bridge" in type(m).__name__ for m in plain.modules())
    bridge_params = {p.data_ptr() for p in tiny.parameters()}
    assert all(p.data_ptr() in bridge_params for p in plain.parameters())   # no copy of any weight
    assert torch.equal(plain(toks).logits, tiny(toks))

# ---------- greedy generation: the same tokens and hidden states on both paths ----------
@pytest.mark.parametrize("prompts", [ONE, THREE], ids=["batch1", "batch3-left-padded"])
@pytest.mark.parametrize("method,weights,extra", [
    ("none", {}, {}),
    ("k-steering", {"a": 1.0, "c": -0.5}, dict(alpha=0.05)),
    ("linear", {"b": 1.0}, dict(alpha=0.05)),
    ("caa", {"a": 1.0, "b": -1.0}, dict(alpha=2.0)),
    ("k-steering", {"c": -1.0}, dict(alpha=0.0, avoid_only=True)),    # Algorithm 2
], ids=["unsteered", "k-steering", "linear", "caa", "alg2-avoid-only"])
def test_steered_greedy_generation_equals_the_bridge_path(tiny, steerers, engines, prompts, method, weights, extra):
    st = steerers[method]
    out = assert_same_run(tiny, lambda: st.generate(prompts, weights, max_new_tokens=6, batch_size=3, **extra), engines)
    assert len(out) == len(prompts)

@pytest.mark.parametrize("positions,layers", [("all", [0, 1]), ("prompt", [0, 1]), ("generated", [0, 1]), ("generated", None)])
def test_every_position_mode_and_several_layers_equal_the_bridge_path(tiny, steerers, engines, positions, layers):
    st = steerers["k-steering"]
    assert_same_run(tiny, lambda: st.generate(THREE, {"a": 1.0}, alpha=0.05, positions=positions, layers=layers,
                                              max_new_tokens=6, batch_size=3), engines)

def test_steering_changes_the_text_on_the_fast_path(tiny, steerers):
    "So the equalities above compare texts that steering moved (not two unsteered runs)."
    base = steerers["none"].generate(THREE, {}, max_new_tokens=6, batch_size=3)
    for method, weights, alpha in (("k-steering", {"a": 1.0}, 0.05), ("caa", {"a": 1.0}, 2.0)):
        assert steerers[method].generate(THREE, weights, alpha=alpha, max_new_tokens=6, batch_size=3) != base, method

def test_a_row_that_ends_early_is_cut_there_and_the_others_go_on(monkeypatch):
    """EOS and padding in a batch, on a fresh tiny model whose unembedding bias favours EOS (its EOS embedding row is zero):
    a caller's hook zeroes row 0's residual, so row 0 ends at once; the others generate on, the same on both paths."""
    model = tiny_model()
    eos = model.tokenizer.eos_token_id
    with torch.no_grad(): hf_model(model).lm_head.bias[eos] = 0.5     # below the other rows' top logits, above zero
    engines = count_engines(model, monkeypatch)
    def end_row_0(x, hook):
        x = x.clone(); x[0] = 0; return x
    texts = [chat_prompt(model, q) for q in THREE]
    def run():
        with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", end_row_0)]): return generate_texts(model, texts, max_new_tokens=6)
    out = assert_same_run(model, run, engines)
    assert out[0] == "" and all(out[1:]) and out[1:] == generate_texts(model, texts, max_new_tokens=6)[1:]

# ---------- fallback ----------
class _AddOne(Steerer):
    "Adds alpha * sum(w) to every edited activation."
    method = "add-one"
    def edit(self, a, w, alpha, steps=1, decay=1.0, avoid_only=False): return a + alpha * w.sum()

def test_an_unmappable_hook_falls_back_to_the_bridge_and_still_matches(tiny, engines):
    assert hf_site(tiny, "ln_final.hook_normalized") is None and hf_site(tiny, "blocks.0.attn.hook_pattern") is None
    st = _AddOne(tiny, "ln_final.hook_normalized", LABELS, typical_norm=1.0, alpha_mode="absolute")
    steered = assert_same_run(tiny, lambda: st.generate(THREE, {"a": 1.0}, alpha=3.0, max_new_tokens=6, batch_size=3),
                              engines, fast_engine="bridge")
    assert engines["hf"] == 0 and steered != st.generate(THREE, {}, max_new_tokens=6, batch_size=3)
    # a hook that only watches an attention pattern also sends generation through the bridge, and changes nothing
    plain = generate_texts(tiny, [chat_prompt(tiny, q) for q in THREE], max_new_tokens=6)
    hf_calls = engines["hf"]
    with tiny.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda x, hook: None)]):
        assert generate_texts(tiny, [chat_prompt(tiny, q) for q in THREE], max_new_tokens=6) == plain
    assert engines["hf"] == hf_calls

def test_no_hook_is_left_behind_on_either_model(tiny, steerers):
    steerers["k-steering"].generate(THREE, {"a": 1.0}, alpha=0.05, layers=[0, 1], max_new_tokens=3, batch_size=3)
    assert not [m for m in hf_model(tiny).modules() if m._forward_hooks or m._forward_pre_hooks]
    assert not [h for h, p in tiny.hook_dict.items() if p._forward_hooks or p._forward_pre_hooks]

# ---------- sampling ----------
def test_seeded_sampling_is_reproducible_and_matches_the_bridge(tiny, steerers, engines):
    st = steerers["k-steering"]
    run = lambda seed: st.generate(THREE, {"a": 1.0}, alpha=0.05, max_new_tokens=8, batch_size=3, do_sample=True, seed=seed)
    first = assert_same_run(tiny, lambda: run(3), engines)
    assert run(3) == first and run(4) != first
    assert len({t for text in first for t in text.split()}) > 3     # sampled text, not one repeated token

# ---------- the cached plain model does not keep a bridge alive ----------
def test_the_plain_model_cache_lets_a_bridge_be_freed():
    model = tiny_model()
    generate_texts(model, "Hi", max_new_tokens=2)
    assert hf_model(model) is not None
    ref = weakref.ref(model); del model; gc.collect()
    assert ref() is None

# ---------- one forward pass with the hooks: forward_logits, measure_kl ----------
def forward_calls(model) -> tuple[dict, list]:
    "Counts forward passes of the plain HF model and of the bridge (pre-hooks; the caller removes the handles)."
    calls = {"hf": 0, "bridge": 0}
    def count(key): return lambda *a, **k: calls.__setitem__(key, calls[key] + 1)
    return calls, [hf_model(model).register_forward_pre_hook(count("hf")), model.register_forward_pre_hook(count("bridge"))]

@pytest.mark.parametrize("method", ["k-steering", "linear", "caa"])
@pytest.mark.parametrize("positions", ["all", "generated"])
def test_measure_kl_runs_on_the_plain_model_and_equals_the_bridge(tiny, steerers, method, positions):
    st = steerers[method]
    text = st.generate(ONE, {"a": 1.0}, alpha=2.0, max_new_tokens=6, positions=positions)[0]
    calls, handles = forward_calls(tiny)
    try: fast = st.measure_kl(ONE, {"a": 1.0}, 2.0, texts=[text], positions=positions)
    finally:
        for h in handles: h.remove()
    assert calls == {"hf": 2, "bridge": 0}, calls            # the steered and the unsteered pass, both on the plain model
    with bridge_generation(): slow = st.measure_kl(ONE, {"a": 1.0}, 2.0, texts=[text], positions=positions)
    assert fast[0] > 1e-4 and abs(fast[0] - slow[0]) <= 1e-4 * slow[0] + 1e-7, (fast, slow)

@pytest.mark.parametrize("share_prefix", [False, True])
def test_continuation_scores_run_on_the_plain_model_and_equal_the_bridge(tiny, share_prefix):
    from interpwb.scoring import continuation_logprobs
    prompt, texts = chat_prompt(tiny, "Tell me about rivers."), ["They flow.", "Rivers run to the sea, mostly.", ""]
    calls, handles = forward_calls(tiny)
    try: fast = continuation_logprobs(tiny, prompt, texts, share_prefix=share_prefix)
    finally:
        for h in handles: h.remove()
    assert calls["hf"] >= 1 and calls["bridge"] == 0, calls
    with bridge_generation(): slow = continuation_logprobs(tiny, prompt, texts, share_prefix=share_prefix)
    assert [len(x) for x in fast] == [len(x) for x in slow] and len(fast[0]) > 0 and len(fast[2]) == 0
    for f, s in zip(fast, slow): torch.testing.assert_close(f, s, atol=1e-4, rtol=1e-4)
