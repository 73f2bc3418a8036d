"""Print a notebook's text outputs (a quick look at what a reader will see): `python tools/show_outputs.py nbs/x.ipynb`"""
import sys, nbformat
for p in sys.argv[1:]:
    for i, c in enumerate(nbformat.read(p, as_version=4).cells):
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            t = o.get("text") or o.get("data", {}).get("text/plain", "") or "".join(o.get("traceback", []))[:2000]
            if t: print(f"[{i}] {t[:600]}")
