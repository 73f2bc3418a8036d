"""Steering speed on the embedded model (one run, printed; no asserts - these machines are noisy, compare ratios):
- steered vs unsteered greedy generation tokens/s (K-Steering, all positions, 1 step) -> ratio (target >= 0.85);
- SteeringPanel slider-to-text latency for 24 new tokens (set a slider, press Generate; unsteered text cached) -> median,
  with the configured thread count and with 2 threads.
Run: .venv/bin/python benchmarks/bench_steering.py  (INTERPWB_THREADS sets torch threads, default 1)."""
import os, statistics, time
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("INTERPWB_PROGRESS", "0")
from interpwb.core import set_threads
threads = set_threads(int(os.environ.get("INTERPWB_THREADS", "1")))
from interpwb.models import load_model, model_name
from interpwb.steering.data import load_tonebank, load_exemplars
from interpwb.steering.ksteering import KSteering
from interpwb.steering.panel import SteeringPanel

model = load_model(device="cpu")
df, ex = load_tonebank(), load_exemplars("tonebank")
ex = ex[ex.question.isin(sorted(ex.question.unique())[:8])]  # 40 short texts: enough for a working classifier
t0 = time.time()
ks = KSteering.fit(model, df, "blocks.18.hook_resid_post", source="exemplars", exemplars=ex, epochs=20)
print(f"model {model_name(model)}, threads {threads}; classifier fitted in {time.time()-t0:.0f}s on {len(ex)} exemplars")

prompts = ["How do I keep my houseplants alive while I am away?", "What is a good way to learn a new language?",
           "How can I save money on groceries?", "Why does bread go stale?"]
N = 32
def rate(weights):
    t = time.perf_counter(); out = ks.generate(prompts, weights, alpha=0.2, max_new_tokens=N, batch_size=1)
    n = sum(len(model.tokenizer(o, add_special_tokens=False)["input_ids"]) + 1 for o in out)  # +1: the EOS or last step
    return n / (time.perf_counter() - t)
rate({})  # warm-up
plain, steered = [], []
for _ in range(2):  # interleave to share the machine's noise
    plain.append(rate({})); steered.append(rate({"casual": 1.0, "expert": -1.0}))
p, s = statistics.median(plain), statistics.median(steered)
print(f"generation: unsteered {p:.2f} tok/s, steered {s:.2f} tok/s, ratio steered/unsteered = {s/p:.3f} (target >= 0.85)")

panel = SteeringPanel(ks, ks.classifier, prompt=prompts[0], max_new_tokens=24, threaded=False)
panel.button.click()  # caches the unsteered text and its probabilities (not part of a slider move)
for th in sorted({threads, 2}):  # the configured thread count, and both cores of a 2-core machine
    set_threads(th); lat = []
    for v in (0.5, 1.0, -0.5, 0.8, -1.0):
        panel.sliders["casual"].value = v
        t = time.perf_counter(); panel.button.click(); lat.append(time.perf_counter() - t)
        assert panel.error is None, panel.error
    print(f"slider-to-text latency, 24 new tokens, {th} thread(s): median {statistics.median(lat):.2f} s over {len(lat)} "
          f"(min {min(lat):.2f}, max {max(lat):.2f}; target <= 4 s on 2 cores)")
print(f"load average during the run: {os.getloadavg()[0]:.1f} (other processes share these cores)")
