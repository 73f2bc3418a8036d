"""Steered generation speed on the embedded model, against plain Hugging Face `transformers` (one run, printed; no
asserts - these machines are noisy, so every setting is measured interleaved, round after round, and compared as ratios):
- greedy tokens/s at batch 1 and batch 8 for: plain HF `generate` of the same weights (a separately loaded model, the
  reference), the same with a hand-written forward hook that adds a vector at layer 18, interpwb unsteered, interpwb
  steered (K-Steering, all positions, 1 step) and, for comparison, interpwb steered through the TransformerLens bridge's
  own generation loop (`bridge_generation()`, the path before generation moved onto the plain HF model);
  ratios to plain HF unsteered (target: steered >= 0.97x);
- SteeringPanel slider-to-text latency for 24 new tokens (set a slider, press Generate; unsteered text cached; the
  panel's own `timings["text"]`: the steered text is on screen) -> median, with the configured thread count and with 2
  threads, beside plain HF generating the same 24 tokens, the time until the KL and the chart are there too, and the
  time until the first words of the steered text show (the text grows in its box as it is generated);
- the KL a steered text caused (`measure_kl`, run after every slider move and by every strength calibration): forward
  passes on the plain HF model with the steering hook relayed vs the same passes on the bridge (`bridge_generation()`);
- the floor of a generated token on this machine: one vector times every weight matrix (the reads alone).
Run: .venv/bin/python benchmarks/bench_steering.py [--threads 1] [--rounds 3] [--new-tokens 32] [--latency-only]."""
import argparse, contextlib, os, statistics, time
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("INTERPWB_PROGRESS", "0")
import torch
from interpwb.core import set_threads
from interpwb.models import load_model, load_hf, model_name, tokenize, chat_prompt
from interpwb.generation import bridge_generation
from interpwb.steering.data import load_tonebank, load_exemplars
from interpwb.steering.ksteering import KSteering
from interpwb.steering.panel import SteeringPanel

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=int(os.environ.get("INTERPWB_THREADS", "1")), help="torch CPU threads")
parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
parser.add_argument("--new-tokens", type=int, default=32, help="new tokens per prompt")
parser.add_argument("--latency-only", action="store_true", help="only the slider-to-text latency (skip the tokens/s table)")
args = parser.parse_args()
threads = set_threads(args.threads)

model = load_model(device="cpu")
plain_hf, _ = load_hf()           # the reference: the same weights, never touched by TransformerLens
plain_hf.eval()
df, ex = load_tonebank(), load_exemplars("tonebank")
ex = ex[ex.question.isin(sorted(ex.question.unique())[:8])]  # 40 short texts: enough for a working classifier
t0 = time.time()
ks = KSteering.fit(model, df, "blocks.18.hook_resid_post", source="exemplars", exemplars=ex, epochs=20)
print(f"model {model_name(model)}, threads {threads}, {args.new_tokens} new tokens, greedy, {args.rounds} interleaved rounds; "
      f"classifier fitted in {time.time()-t0:.0f}s on {len(ex)} exemplars")

QUESTIONS = ["How do I keep my houseplants alive while I am away?", "What is a good way to learn a new language?",
             "How can I save money on groceries?", "Why does bread go stale?", "How do vaccines train the immune system?",
             "What should I pack for a week of hiking?", "Why do cats purr?", "How does a refrigerator keep food cold?"]
WEIGHTS, ALPHA, N = {"casual": 1.0, "expert": -1.0}, 0.2, args.new_tokens
EOS = model.tokenizer.eos_token_id
vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 0.2 * ks.typical_norm / model.cfg.d_model**0.5

def add_vector(module, inputs, output):
    "A hand-written steering hook on a plain HF decoder layer: add a fixed vector to its hidden state."
    return (output[0] + vector,) + tuple(output[1:]) if isinstance(output, tuple) else output + vector

def n_tokens(texts:list[str]) -> int:
    "New tokens, counted the same way for every setting: the text's tokens + 1 (the end-of-turn token or the last step)."
    return sum(len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)

def plain_texts(prompts:list[str], hooked:bool) -> list[str]:
    "Greedy continuations from the untouched HF model (optionally with the vector-adding hook at layer 18), cut at EOS."
    toks, mask = tokenize(model, [chat_prompt(model, p) for p in prompts], padding_side="left")
    handle = plain_hf.model.layers[18].register_forward_hook(add_vector) if hooked else None
    try:
        with torch.no_grad():
            out = plain_hf.generate(toks, attention_mask=mask, max_new_tokens=N, do_sample=False, eos_token_id=EOS, pad_token_id=EOS)
    finally:
        if handle is not None: handle.remove()
    rows = [r[:r.index(EOS)] if EOS in r else r for r in out[:, toks.shape[1]:].tolist()]
    return [model.tokenizer.decode(r, skip_special_tokens=True) for r in rows]

def via_bridge(prompts, batch_size):
    with bridge_generation(): return ks.generate(prompts, WEIGHTS, alpha=ALPHA, max_new_tokens=N, batch_size=batch_size)

SETTINGS = {  # name -> function(prompts, batch_size) -> texts
    "plain HF": lambda p, b: [t for i in range(0, len(p), b) for t in plain_texts(p[i:i+b], hooked=False)],
    "plain HF + vector hook": lambda p, b: [t for i in range(0, len(p), b) for t in plain_texts(p[i:i+b], hooked=True)],
    "interpwb unsteered": lambda p, b: ks.generate(p, {}, max_new_tokens=N, batch_size=b),
    "interpwb steered (K-Steering)": lambda p, b: ks.generate(p, WEIGHTS, alpha=ALPHA, max_new_tokens=N, batch_size=b),
    "interpwb steered, bridge loop": via_bridge,
}

def rate(run, prompts, batch_size) -> float:
    t = time.perf_counter(); texts = run(prompts, batch_size)
    return n_tokens(texts) / (time.perf_counter() - t)

for batch_size, prompts in () if args.latency_only else ((1, QUESTIONS[:4]), (8, QUESTIONS)):
    for run in SETTINGS.values(): run(prompts[:batch_size], batch_size)  # warm-up
    rates = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):   # interleaved: each round measures every setting once
        for name, run in SETTINGS.items(): rates[name].append(rate(run, prompts, batch_size))
    ref = statistics.median(rates["plain HF"])
    print(f"\nbatch {batch_size} ({len(prompts)} prompts): tokens/s (median of {args.rounds}) and ratio to plain HF unsteered")
    for name, r in rates.items():
        m = statistics.median(r)
        per_round = " ".join(f"{x / y:.3f}" for x, y in zip(r, rates["plain HF"]))
        print(f"  {name:31} {m:7.2f} tok/s   ratio {m / ref:.3f}   (per-round ratios {per_round})")
if not args.latency_only: print("target: interpwb steered >= 0.97x plain HF unsteered")

def plain_hf_prompt(question:str) -> dict:
    "The panel's prompt as plain HF inputs (chat template, no padding)."
    toks, mask = tokenize(model, [chat_prompt(model, question)])
    return {"input_ids": toks, "attention_mask": mask}

panel = SteeringPanel(ks, ks.classifier, prompt=QUESTIONS[0], max_new_tokens=24, threaded=False)
panel.button.click()  # caches the unsteered text and its probabilities (not part of a slider move)
print()
for th in sorted({threads, 2}):  # the configured thread count, and both cores of a 2-core machine
    set_threads(th); to_first, to_text, to_all, ref = [], [], [], []
    toks = plain_hf_prompt(QUESTIONS[0])
    for v in (0.5, 1.0, -0.5, 0.8, -1.0):   # interleaved: a slider move, then the floor
        panel.sliders["casual"].value = v
        t = time.perf_counter(); panel.button.click(); to_all.append(time.perf_counter() - t)
        assert panel.error is None, panel.error
        to_first.append(panel.timings["first words"]); to_text.append(panel.timings["text"])   # the KL and the chart follow
        t = time.perf_counter()   # the floor: plain HF greedy generation of the same 24 tokens, same thread count
        with torch.no_grad(): plain_hf.generate(**toks, max_new_tokens=24, min_new_tokens=24, do_sample=False, pad_token_id=EOS)
        ref.append(time.perf_counter() - t)
    med = statistics.median
    print(f"slider-to-text latency, 24 new tokens, {th} thread(s): median {med(to_text):.2f} s over {len(to_text)} "
          f"(min {min(to_text):.2f}, max {max(to_text):.2f}; target <= 1.5 s on 2 cores); plain HF generating the same 24 tokens "
          f"unsteered: median {med(ref):.2f} s -> ratio {med(to_text) / med(ref):.2f}; "
          f"with the KL and the chart's probabilities: {med(to_all):.2f} s (ratio {med(to_all) / med(ref):.2f}); "
          f"the first words of the steered text show after {med(to_first):.2f} s")
set_threads(threads); text = ks.generate([QUESTIONS[0]], WEIGHTS, alpha=ALPHA, max_new_tokens=24)[0]
kl_times = {"plain HF route": [], "bridge": []}
for _ in range(5):   # interleaved
    for name in kl_times:
        t = time.perf_counter()
        with (bridge_generation() if name == "bridge" else contextlib.nullcontext()):
            ks.measure_kl([QUESTIONS[0]], WEIGHTS, ALPHA, texts=[text])
        kl_times[name].append(time.perf_counter() - t)
plain_kl, bridge_kl = statistics.median(kl_times["plain HF route"]), statistics.median(kl_times["bridge"])
print(f"measure_kl of one 24-token steered text, {threads} thread(s): plain HF route {plain_kl:.2f} s, bridge {bridge_kl:.2f} s "
      f"(median of 5) -> {bridge_kl / plain_kl:.2f}x faster")
weights = [p for p in plain_hf.parameters() if p.dim() == 2]   # every matrix a token's forward pass reads (LM head = embedding)
x = {w.shape[1]: torch.randn(1, w.shape[1]) for w in weights}
reads = []
with torch.no_grad():
    for _ in range(5):
        t = time.perf_counter()
        for w in weights: torch.nn.functional.linear(x[w.shape[1]], w)
        reads.append(time.perf_counter() - t)
print(f"the floor of one generated token, {threads} thread(s): multiplying one vector by every weight matrix "
      f"({sum(w.numel() for w in weights) / 1e6:.0f} M weights) takes {1000 * statistics.median(reads):.0f} ms (median of 5) "
      f"-> {24 * statistics.median(reads):.2f} s for 24 tokens before anything else")
print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes share these cores)")
