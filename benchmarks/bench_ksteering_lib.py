"""interpwb's K-Steering side by side with the authors' own library (PyPI `k-steering`), on the embedded model,
the same ToneBank split, the same held-out prompts and target tones, the same evaluation classifier and text judge.
Prints one table (steering score, coherence, perplexity) and the speed of both sides, measured in one run.

    python benchmarks/bench_ksteering_lib.py                  # 60 training questions x 5 tones, 8 prompts per tone
    python benchmarks/bench_ksteering_lib.py --quick          # a smoke run (minutes)

The library pins torch 2.9.1 and transformers 4.56, so it runs in its own virtualenv (.cache/ksteering-venv, made on
first use from PyPI; torch is installed at the version running this script, the library itself with --no-deps).
It loads a local model folder: the embedded model's de-quantised copy, re-labelled for transformers 4 (config's
rope_theta, a tokenizer class it knows) in .cache/bench/smollm2-hf4 - the same weights (greedy output identical).
How each side is run (the library as shipped, except where noted):
- library: `KSteering(folder, SteeringConfig(train_layer=19, steer_layers=[18]))`, `fit(dataset=...)` on the
  instructed prompts (tone instruction + question, chat template) of the steering-half questions; its classifier
  trains for the 1 epoch it ships with. train_layer=19 is `hidden_states[19]`, the output of block 18, which is where
  steer_layers=[18] hooks: this avoids the library's default off-by-one. The model is cast to float32 after loading
  (the library loads float16, which is slow on CPU); one prompt per generate call (its tokenizer pads on the right);
  strength = rho x the typical activation norm at block 18, for rho in --rhos.
- interpwb: `KSteering.fit(..., source="exemplars")` on the exemplars of the steering half's exemplar questions,
  alpha 0.2 (relative), every position, 1 step; one prompt per call too.
Both are scored on the same held-out prompts: the evaluation classifier (an MLP trained on the OTHER half's
exemplars) reads each continuation under the unsteered model; change = steered - unsteered; the unsteered text is
interpwb's (greedy, identical to plain HF). The text judge is MiniLM + logistic regression fitted on all exemplars.
"""
import argparse, json, os, subprocess, sys, textwrap, time
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("INTERPWB_PROGRESS", "0")
import numpy as np, pandas as pd, torch

ROOT = Path(__file__).resolve().parent.parent
LIB_VERSION = "0.1.2"
LIB_ENV = ["transformers==4.56.2", "huggingface-hub==0.35.1", "datasets==4.1.1", "anthropic", "openai", "pydantic",
           "jinja2", "scikit-learn", "pandas", "numpy", "safetensors"]  # what the library imports; torch pinned below

WORKER = textwrap.dedent('''
    import json, sys, time, torch, logging
    a = json.loads(open(sys.argv[1]).read())
    torch.set_num_threads(a["threads"]); torch.manual_seed(0)
    logging.disable(logging.INFO)
    from k_steering.steering.k_steer import KSteering
    from k_steering.steering.config import SteeringConfig, TrainerConfig
    import importlib.metadata as md
    t0 = time.perf_counter()
    ks = KSteering(a["folder"], SteeringConfig(train_layer=a["layer"] + 1, steer_layers=[a["layer"]], output_dir=a["out_dir"]),
                   TrainerConfig(), device="cpu")
    ks.model = ks.model.float()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ks.fit(dataset=a["train"], eval_prompts=a["eval_prompts"], batch_size=16)
    fit_s = time.perf_counter() - t0
    texts, gen_s, n_tok = {}, 0.0, 0
    for rho in a["rhos"]:
        for job in a["jobs"]:
            t0 = time.perf_counter()
            out = ks.get_steered_output([job["chat"]], steering_strength=rho * a["typical_norm"], layers=[a["layer"]],
                                        target_labels=[job["target"]], max_new_tokens=a["max_new_tokens"],
                                        generation_kwargs={"do_sample": False, "max_new_tokens": a["max_new_tokens"]})
            gen_s += time.perf_counter() - t0
            n_tok += len(ks.tokenizer(out[0], add_special_tokens=False)["input_ids"]) + 1
            texts[f"{rho}|{job['key']}"] = out[0]
    print(json.dumps({"load_s": load_s, "fit_s": fit_s, "gen_s": gen_s, "gen_tokens": n_tok, "texts": texts,
                      "version": md.version("k-steering"), "torch": torch.__version__,
                      "transformers": md.version("transformers")}))
''')


def library_python(venv:Path) -> Path|None:
    "The virtualenv's python with the library installed (made on first use); None if it cannot be made (offline)."
    py = venv/"bin"/"python"
    check = [str(py), "-c", "import k_steering.steering.k_steer"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0: return py
    print(f"[bench] making a virtualenv for k-steering {LIB_VERSION} in {venv} (once; needs PyPI)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["torch==" + torch.__version__.split("+")[0], *LIB_ENV], check=True)
        subprocess.run(pip + ["--no-deps", f"k-steering=={LIB_VERSION}"], check=True)
        subprocess.run(check, check=True)
    except subprocess.CalledProcessError as e:
        print(f"[bench] skipped: could not install k-steering into {venv} ({e}); this benchmark needs PyPI once."); return None
    return py


def transformers4_folder(src:Path, dst:Path) -> Path:
    "The embedded model's float folder re-labelled for transformers 4 (same weight file, linked)."
    dst.mkdir(parents=True, exist_ok=True)
    for f in ["model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json"]:
        if (src/f).exists() and not (dst/f).exists(): (dst/f).symlink_to(src/f)
    cfg = json.loads((src/"config.json").read_text())
    if "rope_parameters" in cfg:  # transformers 5 moved rope_theta; 4.x would silently fall back to 10000
        cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]; cfg["rope_scaling"] = None
    tok = json.loads((src/"tokenizer_config.json").read_text())
    tok.pop("backend", None); tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok["model_input_names"] = ["input_ids", "attention_mask"]
    (dst/"config.json").write_text(json.dumps(cfg, indent=1)); (dst/"tokenizer_config.json").write_text(json.dumps(tok, indent=1))
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-questions", type=int, default=60, help="steering-half questions for the library (x 5 tones)")
    ap.add_argument("--per-tone", type=int, default=8, help="held-out prompts per target tone")
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.2, 0.5], help="library strengths, x typical norm")
    ap.add_argument("--alpha", type=float, default=0.2, help="interpwb K-Steering strength (relative)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 10 questions, 1 prompt per tone, rho 0.2")
    args = ap.parse_args()
    if args.quick: args.train_questions, args.per_tone, args.rhos = 10, 1, [0.2]

    from interpwb.core import set_threads, seed_everything, cache_dir
    from interpwb.models import load_model, chat_prompt, model_name, EMBEDDED_MODEL
    from interpwb.steering.data import load_tonebank, load_exemplars, split_steer_eval, labelled_prompts
    from interpwb.steering.classifier import fit_classifier
    from interpwb.steering.ksteering import KSteering
    from interpwb.steering.evaluate import text_probs, continuation_perplexity
    from interpwb.textstats import is_coherent
    from interpwb.steering.compare import target_set_plan, comparison_table
    from interpwb.steering.text_judge import TextJudge
    set_threads(args.threads); seed = seed_everything(0)
    py = library_python(ROOT/".cache"/"ksteering-venv")
    if py is None: return
    model = load_model(device="cpu")
    folder = transformers4_folder(cache_dir("models")/EMBEDDED_MODEL, ROOT/".cache"/"bench"/"smollm2-hf4")
    hook, layer = "blocks.18.hook_resid_post", 18

    tone = load_tonebank(); tones = tone.attrs["labels"]
    steer_q, eval_q = split_steer_eval(tone, seed=seed)
    ex = load_exemplars("tonebank")
    qs = list(np.random.default_rng(seed).permutation(sorted(ex.question.unique())))
    ex_steer, ex_eval = ex[ex.question.isin(qs[:13])], ex[ex.question.isin(qs[13:])]
    plan = target_set_plan(tones, list(eval_q.question), sizes=[1], prompts_per_set=args.per_tone, seed=seed)
    train = labelled_prompts(steer_q.head(args.train_questions))
    lib_train = [dict(prompt=chat_prompt(model, t), label=l) for t, l in zip(train.prompt_text, train.label)]

    t0 = time.perf_counter()
    ours = KSteering.fit(model, tone, hook, source="exemplars", exemplars=ex_steer, epochs=30, seed=seed)
    ours_fit = time.perf_counter() - t0
    eval_clf = fit_classifier(model, tone, hook, source="exemplars", exemplars=ex_eval, epochs=30, seed=seed)
    judge = TextJudge().fit(ex.text, ex.label, cv=0)

    jobs = [dict(key=f"{i}", chat=chat_prompt(model, p), target=t) for i, (p, t) in enumerate(zip(plan.prompt, plan.targets))]
    spec = dict(folder=str(folder), layer=layer, typical_norm=ours.typical_norm, rhos=args.rhos, jobs=jobs, train=lib_train,
                eval_prompts=[j["chat"] for j in jobs[:4]], max_new_tokens=args.max_new_tokens, threads=args.threads,
                out_dir=str(ROOT/".cache"/"bench"/"ksteering-lib-out"))
    spec_path = ROOT/".cache"/"bench"/"ksteering_lib_spec.json"; spec_path.write_text(json.dumps(spec))
    print(f"[bench] library: fit on {len(lib_train)} instructed prompts, steer {len(jobs)} held-out prompts x rho {args.rhos}", flush=True)
    r = subprocess.run([str(py), "-c", WORKER, str(spec_path)], capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"[bench] library worker failed:\n{r.stderr[-3000:]}")
    lib = json.loads(r.stdout.strip().splitlines()[-1])

    prompts = list(plan.prompt)
    def timed_generate(weights_list):
        t, out, n = time.perf_counter(), [], 0
        for p, w in zip(prompts, weights_list):
            o = ours.generate([p], w, alpha=args.alpha, max_new_tokens=args.max_new_tokens)[0]
            out.append(o); n += len(model.tokenizer(o, add_special_tokens=False)["input_ids"]) + 1
        return out, time.perf_counter() - t, n
    base, base_s, base_n = timed_generate([{}] * len(prompts))
    steered, ours_s, ours_n = timed_generate([{t: 1.0} for t in plan.targets])

    pb = text_probs(eval_clf, model, prompts, base); ppl_b = continuation_perplexity(model, prompts, base)
    jb = judge.predict_proba(base)
    idx = np.array([eval_clf.labels.index(t) for t in plan.targets])
    def scored(name, texts):
        "One method's rows in `compare_methods`'s format, so that `comparison_table` summarises them."
        ps = text_probs(eval_clf, model, prompts, texts); ppl = continuation_perplexity(model, prompts, texts) / ppl_b
        d = ps[np.arange(len(texts)), idx] - pb[np.arange(len(texts)), idx]
        js = judge.predict_proba(texts); ok = is_coherent(texts, perplexities=ppl, reference=1.0)  # ppl is already the ratio to the unsteered text
        return pd.DataFrame(dict(method=name, target_delta=d, coherent=ok, coherent_target_delta=np.where(ok, d, 0.0),
                                 ppl_ratio=ppl, text_judge_delta=[js[t][i] - jb[t][i] for i, t in enumerate(plan.targets)],
                                 changed=[a != b for a, b in zip(texts, base)]))
    res = pd.concat([scored(f"interpwb K-Steering, alpha {args.alpha}", steered)] +
                    [scored(f"k-steering {lib['version']} (library), rho {rho}", [lib["texts"][f"{rho}|{j['key']}"] for j in jobs])
                     for rho in args.rhos], ignore_index=True)
    table = comparison_table(res, by="method").assign(changed=res.groupby("method", sort=False).changed.mean())
    pd.set_option("display.width", 200)
    print(f"\nmodel {model_name(model)}, hook {hook}, {len(prompts)} held-out ToneBank prompts ({args.per_tone} per tone), "
          f"{args.max_new_tokens} new tokens, greedy, {args.threads} thread(s); library env: torch {lib['torch']}, "
          f"transformers {lib['transformers']}")
    print(table.round(3).T.to_string())
    lib_rate, ours_rate = lib["gen_tokens"] / lib["gen_s"], ours_n / ours_s
    print(f"\nfit: library {lib['fit_s']:.0f} s ({len(lib_train)} prompts, every layer cached) vs interpwb {ours_fit:.0f} s "
          f"({len(ex_steer)} exemplar texts, one layer) -> ratio library/interpwb {lib['fit_s'] / ours_fit:.1f}")
    print(f"steered generation: library {lib_rate:.2f} tok/s (plain HF + hook) vs interpwb {ours_rate:.2f} tok/s "
          f"(TransformerLens bridge) -> ratio interpwb/library {ours_rate / lib_rate:.2f}; interpwb unsteered {base_n / base_s:.2f} tok/s")
    for i in range(min(2, len(jobs))):
        print(f"\n[{plan.targets[i]}] {prompts[i]}\n  unsteered: {base[i]!r}\n  interpwb:  {steered[i]!r}")
        key = jobs[i]["key"]
        for rho in args.rhos: print(f"  library rho {rho}: {lib['texts'][f'{rho}|{key}']!r}")


if __name__ == "__main__":
    main()
