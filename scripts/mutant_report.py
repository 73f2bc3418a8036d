"""Summarise `make mutants` (mutmut 3) as markdown: counts per module and category, then every surviving mutant with
its one-line change, grouped by the category that explains it. Run from the repository root after `make mutants`:
    .venv/bin/python scripts/mutant_report.py > benchmarks/logs/mutants.md

Categories of survivors (the first that matches):
- message: only the text of a string changes (an error message, a progress label, a docstring, a reason name).
- default: a parameter's documented default changes (`name:type=value`); tests pass explicit values.
- presentation: a figure's layout or styling (sizes, margins, colours, hover text).
- device: `.to(device)` becomes `.to(None)`: the same on a one-device (CPU) run; CUDA runs exercise it.
- efficiency: only what is computed changes, not the result (names_filter, stop_at_layer, length sorting whose order
  is restored, the shared-prefix KV cache of the scorer - its results are tested equal with and without it).
- outside selection: the activation cache's lines, exercised only by tests/test_activations.py and nbs/04_activations,
  which the mutation run does not select.
- guarded: a line of the sparse matching solver (`_top_k` ... `_sparse_match`, and `match_features`' choice of path):
  every sparse answer is checked by an LP-duality certificate against the FULL cosine matrix, and anything the
  certificate rejects falls back to SciPy's dense Hungarian. A surviving change there alters how many candidate
  edges, repair rounds or fallbacks it takes; the tests compare every answer with the dense optimum and, on typical
  pairs, assert no fallback and no repair round. Classed by function, not argued line by line.
- untested: none of the above - a gap, listed so it can be closed by a test or argued in the README.
Mutants whose function no selected test calls are counted as "no tests", listed by function.
"""
import re, sys
from collections import Counter, defaultdict
from mutmut.__main__ import walk_mutatable_files, SourceFileMutationData, status_by_exit_code
from mutmut.mutation.diff_apply import get_diff_for_mutant

RULES = [  # (category, regex on the removed line, regex on the added line)
    ("presentation", r"update_layout|go\.\w+\(|colorscale|colorbar|margin=|height=|hovertemplate|texttemplate|xgap|showlegend", r""),
    ("device", r"\.to\(|device=", r"\.to\(None\)|device=None|^(?!.*device=)"),
    ("efficiency", r"names_filter=|stop_at_layer=|sort_by_length|key=lambda i: -lengths|= hook_layers\(", r""),
    ("efficiency", r"share_prefix and len\(todo\)|first, limit =|while start < limit|if start >= 4|range\(0, len\(todo\), batch_size\)|"
                   r"range\(0, len\(order\), batch_size\)|continuations, batch_size=batch_size", r""),
    ("presentation", r"json\.dumps\(info, indent=2\)", r""),
    ("outside selection", r"use_cache|_cache_spec\(|_load_cached\(|_save_cached\(|max_length=max_length\) if use_cache", r""),
]
EQUIVALENT = [  # (function, regex on the added line, why the change cannot alter a result) - each argued, not assumed
    ("textstats.text_units", r"text\.upper\(\)", "upper- and lower-casing both fold case"),
    ("textstats.degeneracy", r"distinct_n\(text, \)|repetition_rate\(text, \)", "the removed argument equals the default"),
    ("textstats.coherence", r"dtype=None|asarray\(perplexities, \)|asarray\(reference, \)|\[\"\"\] \* len\(df\), \)",
     "the values are already floats / strings"),
    ("ksteering.KSteering.edit", r"dim=\+1|sum\(\+1", "edit receives [n, d] rows: dim 1 is dim -1"),
    ("ensemble._batchtopk", r"dim=\+1|scatter\(\+1|b \* s\), \)", "`flat` is 2-D: dim 1 is dim -1 (topk's default)"),
    ("scoring.continuation_ids", r"if \(t\) or True|if \(continuation\) or True", "tokenising an empty string gives []"),
    ("scoring.perplexity", r"if \(len\(lp\)\) or True", "the mean of an empty tensor is NaN already"),
    ("scoring._score_rows", r"if k <= len\(ids\)", "a row with nothing to score gets an empty slice either way"),
    ("mfr.mfr_warmup", r"warmup_steps < 0|step > warmup_steps|warmup_steps \+ step", "W = 0 and step = W give 1 either way; cos(pi (W+s)/W) = cos(pi (W-s)/W)"),
    ("matching.pairwise_mmcs", r"\(method == \"hungarian\"\) and False", "Hungarian MMCS is symmetric: computing B-vs-A gives the same number"),
    ("baselines.CAASteering.edit", r"steps=2|decay=2\.0", "CAA's push uses neither steps nor decay"),
    ("ensemble._topk_sparse", r"pre\.topk\(cfg\.k, \)", "topk's default dim is -1"),
    ("activations.collect_activations", r"a\.shape\[\+1\]", "pooled activations are 2-D: dim 1 is dim -1"),
    ("activations.collect_activations", r"check_number\(max_length, \"max_length\"", "`tokenize` checks max_length again, with the same message"),
    ("reward.token_reward_figure", r"add_special_tokens=True|tok\(text, \)", "the tokenizers used add no special tokens to plain text"),
    ("activations.collect_activations", r"range\(0, len\(order\), \)\]", "overlapping batches recompute the same rows"),
    ("matching.match_features", r"normalize\([ab], \)|normalize\([ab], dim=\+1\)", "2-D rows: normalize's default dim 1 is dim -1"),
    ("matching.match_features", r"as_tensor\(i[ab], (dtype=None)?\)", "the indices are int64 numpy arrays, which torch reads as long"),
]
GUARDED = ["matching._row_blocks", "matching._top_k", "matching._candidate_edges", "matching._potentials",
           "matching._violations", "matching._is_edge", "matching._certified_match", "matching._sparse_match"]
GUARDED_LINES = r"sparse = method ==|if sparse and min\(len|if len\(a\) <= len\(b\)|if a\.shape\[-1\] != b\.shape\[-1\]"
CATEGORIES = ["untested", "equivalent", "default", "device", "efficiency", "guarded", "outside selection", "presentation", "message"]

def changed_lines(diff:str) -> tuple[list[str], list[str]]:
    minus = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return minus, plus

def _strip(s:str) -> str: return re.sub(r"\s+", "", re.sub(r"[fbr]?(\"[^\"]*\"|'[^']*')", "S", s))

def _same_but_text(a:str, b:str) -> bool:
    "Does `b` differ from `a` only in a string literal (changed, replaced by None or left out)?"
    sa, sb = _strip(a), _strip(b)
    if "S" not in sa: return False
    if sa == sb or sa == re.sub(r"\bNone\b", "S", sb): return True
    return any(re.sub(pat, "", sa, count=1) == sb for pat in (r",S", r"S,", r"S", r",\w+=S", r"\w+=S,", r"S(?=\))", r"(?<=,)\w+=S"))

def category(minus:list[str], plus:list[str], function:str="") -> str:
    if len(minus) == len(plus) and all(_same_but_text(a, b) for a, b in zip(minus, plus)): return "message"
    if len(minus) == len(plus) == 1:
        a, b = minus[0], plus[0]
        if re.match(r"^(def \w+\(.*)?\w+\s*:[^=]+=[^=].*,\s*(#.*)?\)?:?$", a) and a.split("=")[0] == b.split("=")[0]: return "default"
    for where, pattern, _ in EQUIVALENT:
        if where in function and any(re.search(pattern, b) for b in plus): return "equivalent"
    for name, rm, add in RULES:
        if any(re.search(rm, a) for a in minus) and all(re.search(add, b) for b in plus): return name
    if any(g in function for g in GUARDED) or ("matching.match_features" in function and any(re.search(GUARDED_LINES, a) for a in minus)):
        return "guarded"
    return "untested"

def function_of(key:str) -> str:
    return key.split("__mutmut_")[0].replace("ǁ", ".").replace(".x_", ".").replace(".x.", ".")

def main():
    rows = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path); data.load()
        for key, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            if status != "survived": rows.append((str(path), key, status, None, None)); continue
            minus, plus = changed_lines(get_diff_for_mutant(key, path=path))
            rows.append((str(path), key, status, category(minus, plus, function_of(key)),
                         f"`{' / '.join(minus)[:110]}` -> `{' / '.join(plus)[:110]}`"))
    modules = sorted({r[0] for r in rows})
    print("| module | mutants | killed | no tests | survived | " + " | ".join(CATEGORIES) + " |")
    print("|---|---|---|---|---|" + "---|" * len(CATEGORIES))
    for m in modules:
        st = Counter(r[2] for r in rows if r[0] == m)
        cats = Counter(r[3] for r in rows if r[0] == m and r[2] == "survived")
        print(f"| {m} | {sum(st.values())} | {st['killed']} | {st['no tests']} | {st['survived']} | "
              + " | ".join(str(cats[c]) for c in CATEGORIES) + " |")
    total = Counter(r[2] for r in rows)
    tested = total["killed"] + total["survived"]
    print(f"\nAll: {len(rows)} mutants; {total['killed']} killed, {total['survived']} survived "
          f"({total['killed']/max(1, tested):.0%} of the mutants a selected test reaches are killed); "
          f"other outcomes: {dict((k, v) for k, v in total.items() if k not in ('killed', 'survived'))}")
    print("\nWhy the equivalent ones cannot change a result:")
    for where, _, why in EQUIVALENT: print(f"- {where}: {why}")
    for cat in CATEGORIES:
        listed = [r for r in rows if r[2] == "survived" and r[3] == cat]
        if not listed: continue
        print(f"\n### survived, {cat} ({len(listed)})\n")
        for r in listed: print(f"- {function_of(r[1])}: {r[4]}")
    untouched = defaultdict(int)
    for r in rows:
        if r[2] == "no tests": untouched[function_of(r[1])] += 1
    if untouched:
        print(f"\n### no selected test calls these functions ({sum(untouched.values())} mutants)\n")
        for f, n in sorted(untouched.items()): print(f"- {f} ({n})")
    others = [r for r in rows if r[2] not in ("killed", "survived", "no tests")]
    if others:
        print(f"\n### not run to a verdict ({len(others)})\n")
        for r in others: print(f"- {function_of(r[1])}: {r[2]}")

if __name__ == "__main__":
    sys.exit(main())
