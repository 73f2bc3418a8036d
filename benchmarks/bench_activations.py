"""Activation collection throughput vs a bare run_with_cache loop, steering fits with the activation cache, and
embedded-model load cold vs cached.

Prints ratios measured side by side in ONE run (these machines are noisy; absolute seconds vary 2-3x run to run).
    .venv/bin/python benchmarks/bench_activations.py [--threads 2] [--texts 96] [--skip-cold]
Target: collect_activations / bare loop throughput >= 0.9.
Shared prefixes (--prefix-prompts N ToneBank prompts, 0 = skip): the same prompts collected through the bridge's
run_with_cache (a no-op hook attached beyond the hook layer keeps collection off the plain path), on the plain HF
model batch by length, and on the plain HF model with each batch's shared prefix run once.
Collect once, fit many (--fits N questions of ToneBank, -1 = all, 0 = skip): K-Steering's fit on an empty activation
cache, then CAA's and a K-Steering re-fit on the same data, which read the cache. Target: second fit <= 0.2x the first.
"""
import argparse, functools, os, shutil, statistics, tempfile, time
print = functools.partial(print, flush=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("INTERPWB_PROGRESS", "0")
import torch
from interpwb.core import set_threads
from interpwb.models import load_model, chat_prompt, tokenize
from interpwb.activations import collect_activations
from interpwb.testing import sample_texts

def bare_loop(model, texts, hook, batch_size):
    "The baseline: tokenise a batch (right padding), run_with_cache up to the layer, take each text's last real token."
    out = []
    for i in range(0, len(texts), batch_size):
        toks, mask = tokenize(model, texts[i:i+batch_size])
        with torch.no_grad():
            _, cache = model.run_with_cache(toks, attention_mask=mask, names_filter=[hook], stop_at_layer=int(hook.split(".")[1]) + 1)
        out.append(cache[hook][torch.arange(len(toks)), mask.sum(1) - 1].float().cpu())
    return torch.cat(out)

def hook_note(model) -> str:
    from interpwb.steering.classifier import default_hook
    return f"hook {default_hook(model)}"

def timed(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)

def prefix_timings(model, n_prompts:int, hook:str, batch_size:int=32):
    "Seconds to collect the last-token activations of `n_prompts` ToneBank prompts three ways (see the docstring)."
    from interpwb.steering.data import load_tonebank
    from interpwb.steering.classifier import prompt_texts
    rows = prompt_texts(load_tonebank())
    texts = [chat_prompt(model, t) for t in rows.prompt_text.sample(n_prompts, random_state=0)]
    collect = lambda **kw: collect_activations(model, texts, hook, pool="last", batch_size=batch_size, **kw)[hook]
    def bridge():
        handle = model.hook_dict["blocks.29.hook_resid_post"].register_forward_hook(lambda *a: None)  # never reached
        try: return collect()
        finally: handle.remove()
    out, times = {}, {}
    for name, fn in (("bridge run_with_cache, by length", bridge), ("plain HF, by length", lambda: collect(share_prefix=False)),
                     ("plain HF, shared prefixes once", collect)):
        t0 = time.perf_counter(); out[name] = fn(); times[name] = time.perf_counter() - t0
    ref = out["bridge run_with_cache, by length"]
    worst = max(((o - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item() for o in out.values())
    return len(texts), sum(tokenize(model, t)[0].shape[1] for t in texts), times, worst

def fit_timings(model, n_questions:int):
    "Seconds: K-Steering fit on an empty activation cache; then CAA and a K-Steering re-fit on the same data (cached)."
    from interpwb.steering.data import load_tonebank
    from interpwb.steering.ksteering import KSteering
    from interpwb.steering.baselines import CAASteering
    data = load_tonebank()
    if n_questions > 0:
        attrs = data.attrs; data = data[data.id.isin(data.id.unique()[:n_questions])]; data.attrs.update(attrs)
    old, tmp = os.environ.get("INTERPWB_CACHE"), tempfile.mkdtemp()
    os.environ["INTERPWB_CACHE"] = tmp                       # an empty activation cache (the model is loaded already)
    try:
        times = {}
        for name, fit in (("K-Steering, empty cache", lambda: KSteering.fit(model, data)),
                          ("CAA after it", lambda: CAASteering.fit(model, data)),
                          ("K-Steering re-fit", lambda: KSteering.fit(model, data))):
            t0 = time.perf_counter(); fit(); times[name] = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is None: os.environ.pop("INTERPWB_CACHE")
        else: os.environ["INTERPWB_CACHE"] = old
    return data.id.nunique(), times

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2); ap.add_argument("--texts", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16); ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--fits", type=int, default=8, help="ToneBank questions for the fit timings (-1 = all, 0 = skip)")
    ap.add_argument("--prefix-prompts", type=int, default=320, help="ToneBank prompts for the shared-prefix timings (0 = skip)")
    a = ap.parse_args()
    print(f"torch threads: {set_threads(a.threads)}")
    model = load_model(device="cpu")
    hook = "blocks.15.hook_resid_post"
    texts = [chat_prompt(model, t) for t in sample_texts(a.texts, seed=0, min_words=3, max_words=60)]
    n_tok = sum(tokenize(model, t)[0].shape[1] for t in texts)
    ours = lambda: collect_activations(model, texts, hook, pool="last", batch_size=a.batch)[hook]
    base = lambda: bare_loop(model, texts, hook, a.batch)
    assert torch.allclose(ours(), base(), atol=1e-3), "the two paths disagree"
    ours(); base()  # warm-up
    t_ours, t_base = timed(ours), timed(base)
    print(f"activation collection, {len(texts)} texts / {n_tok} tokens, batch {a.batch}, {hook}:")
    print(f"  bare run_with_cache loop: {n_tok/t_base:,.0f} tok/s   collect_activations: {n_tok/t_ours:,.0f} tok/s")
    print(f"  throughput ratio collect_activations / bare = {t_base/t_ours:.2f}  (target >= 0.9)")
    if a.prefix_prompts:
        n, n_tok, times, worst = prefix_timings(model, a.prefix_prompts, "blocks.18.hook_resid_post")
        base_t = times["bridge run_with_cache, by length"]
        print(f"{n} ToneBank prompts ({n_tok} tokens), last token at blocks.18.hook_resid_post, batch 32:")
        for name, t in times.items(): print(f"  {name}: {t:.1f}s  speed-up over the bridge {base_t/t:.2f}x")
        print(f"  largest relative difference from the bridge's activations: {worst:.1e}")
    if a.fits:
        n_q, times = fit_timings(model, a.fits)
        first = times["K-Steering, empty cache"]
        print(f"steering fits on {n_q} ToneBank questions (default sources), {hook_note(model)}:")
        for name, t in times.items(): print(f"  {name}: {t:.1f}s  ratio to the first {t/first:.2f}")
        print("  (target: a second fit on the same data <= 0.2x the first)")
    if a.skip_cold: return
    tmp = tempfile.mkdtemp(); os.environ["INTERPWB_CACHE"] = tmp
    try:
        t0 = time.perf_counter(); load_model(device="cpu"); cold = time.perf_counter() - t0
        t0 = time.perf_counter(); load_model(device="cpu"); warm = time.perf_counter() - t0
    finally: shutil.rmtree(tmp, ignore_errors=True)
    print(f"embedded model load: cold (de-quantise GGUF + save) {cold:.1f}s, cached {warm:.1f}s, ratio {cold/warm:.0f}x")

if __name__ == "__main__": main()
