"""Summarise the survivors of `make mutants` (mutmut 3) as markdown: counts per module, then every survivor with its
one-line change and the category that explains why it is accepted. Run from the repository root after
`make mutants`:  .venv/bin/python scripts/mutant_report.py > benchmarks/logs/mutants.md

Categories (the first that matches):
- message: only the text of a string changes (an error message, a progress label, a reason name in a table).
- default: a parameter's default value changes (tests pass explicit values; the defaults are documented choices).
- equivalent: the change cannot alter the result here (dtype=None for float input, `is`/`==` on small ints, ...).
- untested: none of the above - a real gap, listed so it can be closed by a test.
"""
import re, sys
from collections import Counter
from mutmut.__main__ import walk_mutatable_files, SourceFileMutationData, status_by_exit_code
from mutmut.mutation.diff_apply import get_diff_for_mutant

EQUIVALENT = [r"dtype=None", r"dtype=float\b.*dtype=None"]

def changed_lines(diff:str) -> tuple[list[str], list[str]]:
    minus = [l[1:].strip() for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return minus, plus

def category(minus:list[str], plus:list[str]) -> str:
    if len(minus) == len(plus) == 1:
        a, b = minus[0], plus[0]
        strip = lambda s: re.sub(r"(\"[^\"]*\"|'[^']*')", '""', s)
        if strip(a) == strip(b): return "message"
        if re.match(r"^\w+\s*(:[^=]+)?=.*,\s*(#.*)?$", a) and a.split("=")[0] == b.split("=")[0] and "(" not in a.split("=")[0]:
            return "default"
        if any(re.search(p, b) for p in EQUIVALENT): return "equivalent"
    return "untested"

def main():
    rows = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path); data.load()
        for name, code in data.exit_code_by_key.items():
            status = status_by_exit_code[code]
            if status == "killed": rows.append((str(path), name, status, None, None)); continue
            diff = get_diff_for_mutant(name, path=path)
            minus, plus = changed_lines(diff)
            rows.append((str(path), name, status, category(minus, plus) if status == "survived" else status,
                         f"`{' / '.join(minus)[:110]}` -> `{' / '.join(plus)[:110]}`"))
    by_module = Counter((r[0], r[2]) for r in rows)
    modules = sorted({r[0] for r in rows})
    print("| module | mutants | killed | survived | message | default | equivalent | untested |")
    print("|---|---|---|---|---|---|---|---|")
    for m in modules:
        cats = Counter(r[3] for r in rows if r[0] == m and r[2] == "survived")
        n = sum(1 for r in rows if r[0] == m)
        print(f"| {m} | {n} | {by_module[(m, 'killed')]} | {by_module[(m, 'survived')]} | {cats['message']} | "
              f"{cats['default']} | {cats['equivalent']} | {cats['untested']} |")
    total = Counter(r[2] for r in rows)
    print(f"\nAll: {len(rows)} mutants, {total['killed']} killed ({total['killed']/max(1, len(rows)):.0%}), "
          f"{total['survived']} survived; other outcomes: {dict((k, v) for k, v in total.items() if k not in ('killed', 'survived'))}\n")
    for cat in ("untested", "default", "equivalent", "message"):
        listed = [r for r in rows if r[2] == "survived" and r[3] == cat]
        if not listed: continue
        print(f"\n### {cat} ({len(listed)})\n")
        for r in listed: print(f"- {r[1]}: {r[4]}")
    others = [r for r in rows if r[2] not in ("killed", "survived")]
    if others:
        print(f"\n### not run to a verdict ({len(others)})\n")
        for r in others: print(f"- {r[1]}: {r[2]}")

if __name__ == "__main__":
    sys.exit(main())
