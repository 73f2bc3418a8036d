"Activation collection is padding-correct on the real model, stops early, and the store survives interruption."
import json, shutil
import pytest, torch
from interpwb.activations import collect_activations, ActivationStore, write_activation_store
from interpwb.core import ArtifactError
from interpwb.plain import hf_model, hf_site
from interpwb.models import chat_prompt, tokenize
from interpwb.testing import sample_texts

HOOK = "blocks.14.hook_resid_post"

@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pool", ["last", "mean", "all"])
def test_batched_activation_equals_running_each_text_alone(model, side, pool):
    texts = sample_texts(5, seed=3, min_words=1, max_words=40)
    batched = collect_activations(model, texts, HOOK, pool=pool, padding_side=side, drop_first=True, batch_size=5)[HOOK]
    alone = torch.cat([collect_activations(model, [t], HOOK, pool=pool, drop_first=True)[HOOK]
                       if pool == "all" else collect_activations(model, [t], HOOK, pool=pool, drop_first=True)[HOOK]
                       for t in texts])
    scale = alone.norm(dim=-1).mean()
    assert (batched - alone).norm(dim=-1).max() / scale < 1e-4

def test_last_is_the_last_real_token_not_padding(model):
    texts = ["Hi", "A considerably longer sentence, so that the first one gets padded a lot."]
    for side in ["left", "right"]:
        acts = collect_activations(model, texts, HOOK, pool="all", padding_side=side)
        last = collect_activations(model, texts, HOOK, pool="last", padding_side=side)[HOOK]
        for i in range(2):
            rows = acts[HOOK][acts.index[:, 0] == i]
            assert torch.allclose(last[i], rows[-1], atol=1e-3)

def test_drop_first_removes_the_attention_sink(model):
    text = [chat_prompt(model, "Tell me about tea.")]
    keep = collect_activations(model, text, HOOK, pool="all")
    drop = collect_activations(model, text, HOOK, pool="all", drop_first=True)
    assert len(keep[HOOK]) == len(drop[HOOK]) + 1
    norms = keep[HOOK].norm(dim=-1)
    assert norms[0] > 20 * norms[1:].median()    # position 0 is the sink at this depth
    assert (drop.index[:, 1] > 0).all()

def test_collection_runs_only_up_to_the_deepest_requested_layer(model):
    seen = []
    from transformer_lens.hook_points import HookPoint
    hook = model.hook_dict["blocks.20.hook_resid_post"]
    handle = hook.register_forward_hook(lambda *a: seen.append(1))
    try: collect_activations(model, ["Hello there"], "blocks.5.hook_resid_post")
    finally: handle.remove()
    assert seen == []

def test_the_plain_path_also_stops_after_the_deepest_requested_block(model):
    seen = []
    handle = hf_site(model, "blocks.20.hook_resid_post")[0].register_forward_hook(lambda *a: seen.append(1))
    try: collect_activations(model, ["Hello there", "Hi"], "blocks.5.hook_resid_post")
    finally: handle.remove()
    assert seen == []

# ---------- the plain Hugging Face path with shared prefixes ----------
def _through_bridge(model, text, hook):
    "`text` alone through the bridge's run_with_cache: [pos, d] (no batching, no plain path, no shared prefix)."
    with torch.no_grad(): return model.run_with_cache(tokenize(model, [text])[0], names_filter=[hook])[1][hook][0].float()

def _tokens_run(model, fn):
    "Call `fn`; return its result and the [batch, pos] shape of every input the plain decoder ran."
    shapes = []
    handle = hf_model(model).base_model.register_forward_pre_hook(
        lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    try: return fn(), shapes
    finally: handle.remove()

MAPPED = ["blocks.3.hook_resid_pre", "blocks.6.hook_attn_out", "blocks.9.hook_mlp_out", HOOK]

@pytest.mark.parametrize("pool", ["last", "mean", "all"])
def test_shared_prefix_batches_equal_each_text_through_the_bridge(model, pool):
    qs = sample_texts(6, seed=5, min_words=2, max_words=25)
    texts = ([chat_prompt(model, f"Answer in one short sentence.\n{q}") for q in qs]
             + [chat_prompt(model, f"Answer at length, with care and examples.\n{q}") for q in qs[:3]])
    acts, shapes = _tokens_run(model, lambda: collect_activations(model, texts, MAPPED, pool=pool, drop_first=True, batch_size=4))
    lengths = [tokenize(model, [t])[0].shape[1] for t in texts]
    assert any(b == 1 for b, _ in shapes)                                   # a shared prefix ran on its own
    assert sum(b * n for b, n in shapes) < 0.8 * sum(lengths)               # ... and was not run again per text
    unshared, shapes_unshared = _tokens_run(model, lambda: collect_activations(
        model, texts, MAPPED, pool=pool, drop_first=True, batch_size=4, share_prefix=False))
    assert sum(b * n for b, n in shapes_unshared) >= sum(lengths) and len(shapes_unshared) == 3   # 4 + 4 + 1 texts
    for h in MAPPED:
        want = [_through_bridge(model, t, h) for t in texts]
        want = torch.stack([w[-1] for w in want]) if pool == "last" else (
               torch.stack([w[1:].mean(0) for w in want]) if pool == "mean" else torch.cat([w[1:] for w in want]))
        assert acts[h].shape == want.shape
        assert (acts[h] - want).norm(dim=-1).max() / want.norm(dim=-1).mean() < 1e-4, h
        assert (unshared[h] - want).norm(dim=-1).max() / want.norm(dim=-1).mean() < 1e-4, h
    if pool == "all":
        assert acts.index[:, 0].tolist() == [i for i, n in enumerate(lengths) for _ in range(n - 1)]
        assert acts.tokens.tolist() == [t for x in texts for t in tokenize(model, [x])[0][0, 1:].tolist()]

def test_texts_without_a_common_prefix_are_batched_by_length(model):
    texts = sample_texts(8, seed=11, min_words=3, max_words=40)
    _, shapes = _tokens_run(model, lambda: collect_activations(model, texts, HOOK, batch_size=4))
    lengths = sorted((tokenize(model, [t])[0].shape[1] for t in texts), reverse=True)
    assert shapes == [(4, lengths[0]), (4, lengths[4])]

def test_a_hook_point_the_plain_model_lacks_or_an_attached_hook_runs_through_the_bridge(model):
    texts = [chat_prompt(model, q) for q in ["What is tea?", "Why is the sky blue?"]]
    _, shapes = _tokens_run(model, lambda: collect_activations(model, texts, "blocks.2.hook_resid_mid", pool="mean"))
    assert shapes == []
    handle = model.hook_dict[HOOK].register_forward_hook(lambda m, a, out: out * 2)
    try: doubled, shapes = _tokens_run(model, lambda: collect_activations(model, texts, HOOK))
    finally: handle.remove()
    assert shapes == [] and torch.allclose(doubled[HOOK], 2 * collect_activations(model, texts, HOOK)[HOOK], rtol=1e-4, atol=1e-3)

def test_metadata_and_float32_cpu(model):
    acts = collect_activations(model, ["a", "b c"], ["blocks.2.hook_resid_post", "blocks.2.mlp.hook_out"], pool="mean")
    assert acts.meta["model"] == "SmolLM2-135M-Instruct" and acts.meta["pool"] == "mean" and acts.meta["n_texts"] == 2
    for a in acts.acts.values(): assert a.dtype == torch.float32 and a.device.type == "cpu" and a.shape == (2, 576)
    with pytest.raises(KeyError, match="Known"): acts["blocks.3.hook_resid_post"]

def test_bad_inputs_are_named(model):
    with pytest.raises(ValueError, match="at least one text"): collect_activations(model, [], HOOK)
    with pytest.raises(KeyError, match="pooling"): collect_activations(model, ["x"], HOOK, pool="max")
    with pytest.raises(KeyError, match="hook point"): collect_activations(model, ["x"], "blocks.99.hook_resid_post")

def test_store_interrupted_mid_shard_stays_readable_and_resumes(tiny, tmp_path, monkeypatch):
    import interpwb.activations as A
    texts = sample_texts(24, seed=5)
    full = write_activation_store(tiny, texts, "blocks.1.hook_resid_post", tmp_path/"full", texts_per_shard=5).read_all()
    # a crash while the third shard is being computed: two shards written, a third shard file half-written
    part, calls, real = tmp_path/"part", {"n": 0}, A.collect_activations
    def dies_on_the_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3: raise KeyboardInterrupt("killed")
        return real(*a, **k)
    monkeypatch.setattr(A, "collect_activations", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt): write_activation_store(tiny, texts, "blocks.1.hook_resid_post", part, texts_per_shard=5)
    monkeypatch.setattr(A, "collect_activations", real)
    (part/"shard_00002.safetensors.partial.tmp").write_bytes(b"\x00" * 100)
    store = ActivationStore(part)
    assert len(store) == sum(s["n"] for s in store.meta["shards"]) and store.meta["texts_done"] == 10
    resumed = write_activation_store(tiny, texts, "blocks.1.hook_resid_post", part, texts_per_shard=5)
    assert torch.allclose(resumed.read_all(), full, atol=1e-5)

def test_store_refuses_another_model_or_hook(tiny, tmp_path):
    write_activation_store(tiny, sample_texts(4), "blocks.1.hook_resid_post", tmp_path/"s")
    with pytest.raises(ArtifactError, match="hook_point"):
        write_activation_store(tiny, sample_texts(4), "blocks.0.hook_resid_post", tmp_path/"s")

def test_store_batches_cover_every_row_once_and_shuffle(tiny, tmp_path):
    store = write_activation_store(tiny, sample_texts(30, seed=2), "blocks.0.hook_resid_post", tmp_path/"s", texts_per_shard=4)
    rows = store.read_all()
    batches = list(store.batches(batch_size=64, seed=7, shards_in_memory=2))
    got = torch.cat(batches)
    assert got.shape == rows.shape
    key = lambda t: sorted(map(tuple, t[:, :3].round(decimals=4).tolist()))
    assert key(got) == key(rows)
    assert not torch.equal(got, rows)

# ---------- collect once, fit many ----------
def test_a_second_steering_fit_reads_the_cached_activations(tiny, tmp_path, monkeypatch):
    from interpwb.steering.data import load_tonebank, load_exemplars
    from interpwb.steering.ksteering import KSteering
    from interpwb.steering.baselines import CAASteering
    monkeypatch.setenv("INTERPWB_CACHE", str(tmp_path))     # an empty cache (the tiny model is already loaded)
    data = load_tonebank()
    data = data[data.id.isin(data.id.unique()[:3])]
    data.attrs.update(load_tonebank().attrs)
    ex = load_exemplars("tonebank").groupby("label").head(2)
    calls = {"n": 0}
    run = tiny.run_with_cache
    def counting(*a, **k): calls["n"] += 1; return run(*a, **k)
    monkeypatch.setattr(tiny, "run_with_cache", counting)                                 # the bridge path
    plain = hf_model(tiny).base_model.register_forward_pre_hook(lambda *a: calls.update(n=calls["n"] + 1))  # the plain one
    try:
        first = KSteering.fit(tiny, data, "blocks.1.hook_resid_post", exemplars=ex, epochs=2, val_frac=0.0)
        n_first = calls["n"]
        assert n_first > 0 and len(list((tmp_path/"activations").iterdir())) == 2      # prompts and exemplars
        CAASteering.fit(tiny, data, "blocks.1.hook_resid_post", source="both", exemplars=ex)
        again = KSteering.fit(tiny, data, "blocks.1.hook_resid_post", exemplars=ex, epochs=2, val_frac=0.0)
        assert calls["n"] == n_first                                                      # nothing collected twice
        assert again.typical_norm == first.typical_norm
        KSteering.fit(tiny, data, "blocks.0.hook_resid_post", exemplars=ex, epochs=2, val_frac=0.0)
    finally: plain.remove()
    assert calls["n"] > n_first                                                           # another hook: collected

# ---------- the batch planner (pure: token ids in, batches out) ----------
def _tokens_planned(ids, plan):
    "Tokens a plan runs: each batch padded to its longest text past its prefix; a prefix the previous batch shares runs once."
    seen, n = None, 0
    for b, k in plan:
        n += len(b) * (max(len(ids[i]) for i in b) - k) + (k if tuple(ids[b[0]][:k]) != seen else 0)
        seen = tuple(ids[b[0]][:k])
    return n

def _grouped_ids(seed, groups=3, per_group=60):
    "Texts like a steering fit's prompts: a shared system turn, one of a few long instructions, then a question of varied length."
    g = torch.Generator().manual_seed(seed)
    system = torch.randint(1000, 2000, (12,), generator=g).tolist()
    ids = []
    for _ in range(groups):
        instruction = torch.randint(2000, 3000, (30,), generator=g).tolist()
        for _ in range(per_group):
            n = int(torch.randint(3, 40, (1,), generator=g))
            ids.append(system + instruction + torch.randint(3000, 9000, (n,), generator=g).tolist())
    return [ids[i] for i in torch.randperm(len(ids), generator=g).tolist()]

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planned_batches_cover_every_text_once_under_a_prefix_they_all_share(seed):
    from interpwb.activations import _plan
    ids = _grouped_ids(seed) + [[5, 6, 7], [5, 6, 7, 8, 9], [7] * 50]      # and a few texts sharing nothing
    for batch_size in (1, 7, 16):
        plan = _plan(ids, batch_size, True, True)
        assert sorted(i for b, _ in plan for i in b) == list(range(len(ids)))
        for b, k in plan:
            assert 1 <= len(b) <= batch_size
            assert all(len(ids[i]) > k and ids[i][:k] == ids[b[0]][:k] for i in b)   # the prefix is shared, each text has a rest

def test_texts_under_one_prefix_are_cut_by_length_not_by_token_order():
    from interpwb.activations import _plan
    ids = _grouped_ids(0)
    plan = _plan(ids, 16, True, True)
    best = 0                                                                # by hand: each instruction's texts sorted by length,
    for group in {tuple(x[:42]) for x in ids}:                              # cut into batches of 16, its prefix run once
        tails = sorted((len(x) - 42 for x in ids if tuple(x[:42]) == group), reverse=True)
        best += 42 + sum(len(tails[j:j+16]) * tails[j] for j in range(0, len(tails), 16))
    assert _tokens_planned(ids, plan) <= 1.02 * best                        # token order alone pads much more here
    assert all(k >= 42 for _, k in plan)                                    # each batch runs its instruction as a prefix
