"""Render every notebook in nbs/ into the static docs site in site/, offline, without re-executing any notebook.

    .venv/bin/python scripts/build_docs.py            # -> site/index.html (open it, or serve site/ with any web server)
    .venv/bin/python scripts/build_docs.py --out /tmp/site

Pipeline (see docs_src/README.md):
1. nbdev's own notebook processors (the ones `nbdev_docs` runs before Quarto) turn each notebook into its docs form:
   `#| hide` / `#| export` cells removed, directive comments stripped, a `show_doc` cell added after every exported
   definition. The `show_doc` cells are rendered here by importing the exported module (nothing else is executed),
   so the API reference is nbdev's markdown.
2. Saved plotly outputs become a div drawn by the plotly.js shipped inside the installed `plotly` package; saved
   ipywidgets state is rendered by `@jupyter-widgets/html-manager` + `requirejs`, installed from npm (pinned in
   docs_src/package-lock.json) into the git-ignored _proc/docs_vendor/ and copied into the site. No CDN at view time.
3. mkdocs + mkdocs-material + mkdocs-jupyter render the processed notebooks (sidebar in notebook order, search);
   docs_src/hooks.py points each page at the vendored scripts with relative URLs.
"""
from __future__ import annotations
import argparse, ast, copy, hashlib, html, json, os, re, shutil, subprocess, sys, time, uuid, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS_SRC = ROOT/"docs_src"
PROC = ROOT/"_proc"/"docs"            # processed notebooks = mkdocs docs_dir (git-ignored)
VENDOR = ROOT/"_proc"/"docs_vendor"   # npm packages (git-ignored)
# The sidebar is the package map: the root notebooks (the foundation modules), then one section per subpackage, in the
# order of the architecture (a folder not listed here comes after them, then the tutorials).
SECTIONS = {"": "Foundations", "steering": "steering: K-Steering", "sae": "sae: sparse autoencoders and MFR",
            "rl": "rl: tuning on a known reward", "model_diff": "model_diff: base vs tuned",
            "simulators": "simulators: Cartesian objects and PSE", "app": "app: the workbench", "tutorials": "Tutorials"}

def log(*a): print("[docs]", *a, flush=True)

# ---------------------------------------------------------------------------------------------------------------- JS
def vendor_js() -> Path:
    "Install the pinned npm packages into _proc/docs_vendor (once per lock-file version); returns node_modules."
    lock = (DOCS_SRC/"package-lock.json").read_bytes()
    stamp = VENDOR/".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    nm = VENDOR/"node_modules"
    if stamp.exists() and stamp.read_text() == digest and (nm/"requirejs"/"require.js").exists(): return nm
    npm = shutil.which("npm")
    if npm is None: sys.exit("[docs] npm is needed once to fetch the widget renderer (apt-get install npm)")
    VENDOR.mkdir(parents=True, exist_ok=True)
    for f in ("package.json", "package-lock.json"): shutil.copy(DOCS_SRC/f, VENDOR/f)
    log("npm ci (pinned @jupyter-widgets/html-manager, requirejs, mathjax) ->", VENDOR)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=VENDOR, check=True,
                   env={**os.environ, "npm_config_cache": str(ROOT/"_proc"/"npm-cache")})
    stamp.write_text(digest)
    return nm

def copy_assets(nm:Path, dest:Path):
    "Copy the vendored JS (and plotly.js from the installed plotly package) into the site's assets/vendor/."
    import plotly
    v = dest/"assets"/"vendor"; v.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(plotly.__file__).parent/"package_data"/"plotly.min.js", v/"plotly.min.js")
    shutil.copy(nm/"requirejs"/"require.js", v/"require.js")
    hm = v/"html-manager"; hm.mkdir(exist_ok=True)
    for f in (nm/"@jupyter-widgets"/"html-manager"/"dist").iterdir():
        if not f.name.endswith(".map") and not f.name.startswith("libembed"): shutil.copy(f, hm/f.name)
    shutil.copy(nm/"mathjax"/"es5"/"tex-svg.js", v/"tex-svg.js")
    for f in (DOCS_SRC/"assets").glob("*"): shutil.copy(f, dest/"assets"/f.name)

# ------------------------------------------------------------------------------------------------------- notebooks
def _plotly_html(fig:dict) -> str:
    "A div + script drawing a saved plotly figure with the page's plotly.js (no CDN, no require)."
    uid = "plotly-" + uuid.uuid4().hex[:12]
    h = (fig.get("layout") or {}).get("height") or 450
    js = json.dumps({"data": fig.get("data", []), "layout": fig.get("layout", {}), "config": {**fig.get("config", {}),
                     "responsive": True, "displaylogo": False}}).replace("</", "<\\/")
    return (f'<div id="{uid}" class="plotly-graph-div" style="height:{h}px; width:100%;"></div>\n'
            f'<script type="text/javascript">(function(){{var f={js};'
            f'Plotly.newPlot("{uid}", f.data, f.layout, f.config);}})();</script>')

def _is_plotly_init(o:dict) -> bool:
    d = o.get("data", {})
    h = "".join(d.get("text/html", "")) if "text/html" in d else ""
    return "application/vnd.plotly.v1+json" not in d and ("window.PlotlyConfig" in h or "define('plotly'" in h)

def fix_outputs(outputs:list) -> list:
    "Saved plotly outputs -> self-contained divs; plotly's inline library/CDN bootstrap outputs dropped."
    res = []
    for o in outputs:
        if _is_plotly_init(o): continue
        d = o.get("data", {})
        if "application/vnd.plotly.v1+json" in d:
            o = copy.deepcopy(o)
            o["data"] = {"text/html": _plotly_html(d["application/vnd.plotly.v1+json"])}
            o.setdefault("metadata", {})
        res.append(o)
    return res

def fix_widget_state(nb):
    "Plotly outputs captured inside saved Output widgets get the same treatment."
    st = (nb.get("metadata", {}).get("widgets") or {}).get("application/vnd.jupyter.widget-state+json")
    if not st: return
    for m in st.get("state", {}).values():
        s = m.get("state", {})
        if m.get("model_name") == "OutputModel" and s.get("outputs"): s["outputs"] = fix_outputs(s["outputs"])

_re_src_link = re.compile(r"^\[source\]\([^)]*\)\{[^}]*\}\s*$", re.MULTILINE)
def _show_doc_md(obj, name=None) -> str:
    from nbdev.showdoc import show_doc
    md = show_doc(obj, name=name)._repr_markdown_()
    return _re_src_link.sub("", md).strip()

def _module_ns(nb) -> dict:
    "Namespace to resolve `show_doc(x)` names: the notebook's exported module plus its `from interpwb... import` lines."
    import importlib
    ns = {}
    exp = None
    for c in nb.cells:
        m = re.search(r"^\s*#\|\s*default_exp\s+(\S+)", c.source if c.cell_type == "code" else "", re.M)
        if m: exp = m.group(1); break
    if exp:
        try: ns.update(vars(importlib.import_module(f"interpwb.{exp}")))
        except Exception as e: warnings.warn(f"cannot import interpwb.{exp} for show_doc: {e}")
    for c in nb.cells:
        if c.cell_type != "code": continue
        for line in c.source.splitlines():
            if re.match(r"^\s*(from\s+interpwb[\w.]*\s+import\s+[^(]+$|import\s+interpwb[\w.]*\s*$)", line):
                try: exec(line.strip(), ns)
                except Exception: pass
    return ns

def process_notebook(src:Path, dest:Path):
    "nbdev docs processing (hide/export/directives/show_doc) + output fixes; writes the processed notebook to `dest`."
    from nbdev.process import NBProcessor, extract_directives
    from nbdev.processors import (add_show_docs, strip_ansi, hide_line, filter_stream_, rm_header_dash, rm_export,
                                  clean_magics, hide_, strip_hidden_metadata, populate_language)
    from execnb.nbio import read_nb, write_nb
    nb = read_nb(src)
    ns = _module_ns(nb)
    def render_show_docs(cell):
        if cell.cell_type != "code" or not re.match(r"^\s*show_doc\(", cell.source or ""): return
        tree = ast.parse(cell.source)
        mds = []
        for node in tree.body:
            call = getattr(node, "value", None)
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "show_doc" and call.args): continue
            try:
                obj = eval(ast.unparse(call.args[0]), ns)
                kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg == "name"}
                mds.append(_show_doc_md(obj, **kw))
            except Exception as e: warnings.warn(f"{src.name}: show_doc failed for `{ast.unparse(call.args[0])}`: {e}")
        if mds:
            cell.outputs = [{"output_type": "display_data", "metadata": {},
                             "data": {"text/markdown": "\n\n".join(mds), "text/plain": ""}}]
        tags = cell.metadata.setdefault("tags", [])
        if "remove_input" not in tags: tags.append("remove_input")
        if not cell.get("outputs"): del cell["source"]
    def quarto_dirs(cell):
        "Honour the Quarto cell options nbdev notebooks use: echo/output/include false."
        d = cell.directives_
        if d.get("include:") == ["false"]: del cell["source"]; return
        if d.get("echo:") == ["false"]: cell.metadata.setdefault("tags", []).append("remove_input")
        if d.get("output:") == ["false"] and cell.cell_type == "code": cell.outputs = []
    def fix_cell(cell):
        if cell.cell_type == "code": cell.outputs = fix_outputs(cell.get("outputs", []))
    procs = [populate_language, add_show_docs, strip_ansi, hide_line, filter_stream_, rm_header_dash, quarto_dirs,
             render_show_docs, rm_export, clean_magics, hide_, strip_hidden_metadata, fix_cell]
    p = NBProcessor(nb=nb, procs=procs, rm_directives=True)
    p.process()
    nb = p.nb
    for c in nb.cells:   # drop nbdev's bookkeeping attributes before writing
        for k in [k for k in c if k.endswith("_") or k == "has_sd"]: del c[k]
        if c.cell_type == "code" and not c.source.strip() and not c.get("outputs"): c.source = None
    nb.cells = [c for c in nb.cells if c.get("source") is not None]
    fix_widget_state(nb)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dest)

def nb_title(path:Path) -> str:
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(c["source"]), re.M)
            if m: return m.group(1).strip()
    return path.stem

def _section(p:Path, nbs:Path) -> str:
    rel = p.relative_to(nbs)
    return rel.parts[0] if len(rel.parts) > 1 else ""

def notebooks(nbs:Path) -> list[Path]:
    "Every notebook in nbs/ (recursively) in reading order - the package map's, see `SECTIONS` - skipping checkpoints and drafts."
    found = [p for p in nbs.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
             and not any(part.startswith(("_", ".")) for part in p.relative_to(nbs).parts)]
    order = list(SECTIONS)
    rank = lambda p: (p.name != "index.ipynb", order.index(_section(p, nbs)) if _section(p, nbs) in order else len(order) - 1.5, p.as_posix())
    return sorted(found, key=rank)

def make_nav(paths:list[Path], nbs:Path) -> list:
    "Sidebar: Home, then one section per folder (= subpackage), in the order `notebooks` returns them."
    nav, groups = [], {}
    for p in paths:
        rel = p.relative_to(nbs).as_posix()
        if rel == "index.ipynb": nav.insert(0, {"Home": rel}); continue
        groups.setdefault(_section(p, nbs), []).append({nb_title(p): rel})
    return nav + [{SECTIONS.get(k, k.replace("_", " ")): v} for k, v in groups.items()]

# ------------------------------------------------------------------------------------------------------------ main
def build(out:Path=ROOT/"site", nbs:Path=ROOT/"nbs", strict:bool=False) -> Path:
    "Build the site into `out`; returns the path of its index.html."
    import yaml
    t0 = time.time()
    os.environ.setdefault("INTERPWB_PROGRESS", "0"); os.environ.setdefault("HF_HUB_OFFLINE", "1")
    nm = vendor_js()
    if PROC.exists(): shutil.rmtree(PROC)
    paths = notebooks(nbs)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        for p in paths: process_notebook(p, PROC/p.relative_to(nbs))
    for w in ws:
        if "show_doc" in str(w.message) or "cannot import" in str(w.message): log("warning:", w.message)
    for d in [d for d in nbs.rglob("*") if d.is_dir() and d.name == "images"]:
        shutil.copytree(d, PROC/d.relative_to(nbs), dirs_exist_ok=True)
    copy_assets(nm, PROC)
    log(f"processed {len(paths)} notebooks in {time.time()-t0:.0f}s")
    cfg = yaml.safe_load((DOCS_SRC/"mkdocs.yml").read_text())
    cfg.update(docs_dir=str(PROC), site_dir=str(Path(out).resolve()), nav=make_nav(paths, nbs),
               hooks=[str(DOCS_SRC/"hooks.py")])
    for pl in cfg["plugins"]:
        if isinstance(pl, dict) and "mkdocs-jupyter" in pl: pl["mkdocs-jupyter"]["cache_dir"] = str(ROOT/"_proc"/"mkdocs-jupyter-cache")
    conf = ROOT/"_proc"/"mkdocs.yml"; conf.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # nbconvert (inside mkdocs-jupyter) reads the widget-renderer URL from this Jupyter config dir
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(DOCS_SRC/"jupyter"), "JUPYTER_CONFIG_PATH": str(DOCS_SRC/"jupyter"),
           "JUPYTER_PLATFORM_DIRS": "1", "PYTHONWARNINGS": "ignore", "NO_MKDOCS_2_WARNING": "1"}
    mk = [sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(conf)] + (["--strict"] if strict else [])
    subprocess.run(mk, cwd=ROOT, env=env, check=True)
    idx = Path(out)/"index.html"
    log(f"site built in {time.time()-t0:.0f}s: {idx}")
    return idx

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT/"site"), help="output folder (default: site/)")
    ap.add_argument("--strict", action="store_true", help="fail on mkdocs warnings")
    a = ap.parse_args()
    build(Path(a.out), strict=a.strict)
