"""Generate README.md from nbs/index.ipynb (the landing page), keeping text outputs and dropping rich figures.

nbdev_readme needs Quarto, which cannot be installed here, so this does the same job with nbconvert.
Run: .venv/bin/python scripts/make_readme.py   (tests/test_repo.py checks README.md is up to date)
"""
import copy, sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]

def readme_text() -> str:
    nb = nbformat.read(ROOT/"nbs"/"index.ipynb", as_version=4)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        cell.source = "\n".join(l for l in cell.source.splitlines() if not l.startswith("#|"))
        kept = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr": continue
            if o.get("output_type") in ("display_data", "execute_result"):
                data = o.get("data", {})
                if "text/plain" not in data or any(k.startswith("application/vnd.plotly") for k in data):
                    kept.append(nbformat.v4.new_output("stream", name="stdout", text="[interactive figure: see the notebook or the docs site]\n"))
                    continue
                o = copy.deepcopy(o); o["data"] = {"text/plain": data["text/plain"]}
            kept.append(o)
        cell.outputs = kept
    body, _ = MarkdownExporter().from_notebook_node(nb)
    header = "<!-- generated from nbs/index.ipynb by scripts/make_readme.py: edit the notebook, not this file -->\n\n"
    return header + body.strip() + "\n"

if __name__ == "__main__":
    text = readme_text()
    if "--check" in sys.argv:
        sys.exit(0 if (ROOT/"README.md").read_text() == text else "README.md is stale: run scripts/make_readme.py")
    (ROOT/"README.md").write_text(text)
    print("wrote README.md")
