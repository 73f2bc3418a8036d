"""Developer convenience: turn a percent-format script into a notebook (or back).

    python tools/pct2nb.py draft.py nbs/02_models.ipynb      # script -> notebook
    python tools/pct2nb.py nbs/02_models.ipynb draft.py      # notebook -> script

Cells start at lines `# %%` (code) or `# %% [markdown]` (markdown; every line prefixed by `# `).
The notebook in nbs/ is the source of truth; this only makes writing many small cells quicker.
"""
import sys, nbformat

def script_to_nb(text):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = "\n".join(buf).strip("\n")
        if kind == "md":
            src = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in src.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(src))
        elif src.strip():
            cells.append(nbformat.v4.new_code_cell(src))
    for line in text.splitlines():
        if line.startswith("# %%"):
            flush(); buf = []
            kind = "md" if "[markdown]" in line else "code"
        else:
            buf.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
    return nb

def nb_to_script(nb):
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            out.append("# %% [markdown]\n" + "\n".join("# " + l if l else "#" for l in c.source.splitlines()))
        else:
            out.append("# %%\n" + c.source)
    return "\n\n".join(out) + "\n"

if __name__ == "__main__":
    src, dst = sys.argv[1:3]
    if src.endswith(".ipynb"):
        open(dst, "w").write(nb_to_script(nbformat.read(src, as_version=4)))
    else:
        nbformat.write(script_to_nb(open(src).read()), dst)
