"""The docs site: `scripts/build_docs.py` renders every notebook offline; (slow tier) every page loads in headless
Chromium with no console errors and no request leaving the machine; saved plotly figures and widget state render; nbdev directives are
processed (hidden cells hidden, directive comments stripped, show_doc API reference present)."""
import functools, http.server, importlib.util, json, re, socketserver, subprocess, sys, threading
from pathlib import Path
from urllib.parse import urlparse
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_docs", ROOT/"scripts"/"build_docs.py")
build_docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(build_docs)
NOTEBOOKS = build_docs.notebooks(ROOT/"nbs")

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The site, built once for this module into a temporary folder (notebooks are not re-executed)."
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, str(ROOT/"scripts"/"build_docs.py"), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out

@pytest.fixture(scope="module")
def served(site):
    "An HTTP server on 127.0.0.1 serving the site (the search worker does not run from file://)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown(); srv.server_close()

def page_of(nb:Path) -> str:
    return nb.relative_to(ROOT/"nbs").with_suffix(".html").as_posix()

def pages(site:Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if p.name != "404.html")

def test_every_notebook_has_a_page_in_notebook_order(site):
    assert NOTEBOOKS, "no notebooks found in nbs/"
    for nb in NOTEBOOKS: assert (site/page_of(nb)).exists(), f"no page for {nb}"
    index = (site/"index.html").read_text()
    nav = re.findall(r'<a href="([^"#]+\.html)"\s+class="md-nav__link', index)
    order = [page_of(nb) for nb in NOTEBOOKS if nb.name != "index.ipynb"]
    listed = [p for p in dict.fromkeys(nav) if p in order]
    assert listed == [p for p in order if p in listed] and set(order) <= set(listed), (listed, order)

def test_directives_hidden_cells_and_api_reference(site):
    core = (site/"00_core.html").read_text()
    assert re.search(r"<h3[^>]*>\s*cache_dir", core), "show_doc reference for cache_dir missing"
    assert "Save tensors + config (+ files) as one unit" in core  # save_artifact's docstring, via show_doc
    for p in pages(site):
        text = (site/p).read_text()
        body = re.sub(r"<script.*?</script>", "", text, flags=re.S)
        sources = re.findall(r'class="clipboard-copy-txt"[^>]*>(.*?)</div>', body, flags=re.S)  # each code cell's source
        left = [l for src in sources for l in src.splitlines() if re.match(r"\s*#\s*\|", l)]
        assert not left, f"{p}: nbdev directive comments left in code cells: {left[:3]}"
        assert "from fastcore.test import" not in body, f"{p}: a #| hide cell is visible"
        assert "__all__ = [" not in body, f"{p}: an #| export cell's source is visible"

def test_offline_assets_only(site):
    for p in pages(site):
        text = (site/p).read_text()
        ext = [u for u in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', text)]
        assert not ext, f"{p} loads {ext[:3]} from the network"
    assert (site/"assets"/"vendor"/"plotly.min.js").stat().st_size > 1_000_000
    assert (site/"assets"/"vendor"/"html-manager"/"embed-amd.js").exists() and (site/"assets"/"vendor"/"require.js").exists()
    idx = json.loads((site/"search"/"search_index.json").read_text())
    assert any("collect_activations" in d.get("text", "") + d.get("title", "") for d in idx["docs"]), "search index lacks the API"

@pytest.mark.slow   # ~60 s of browser time: the default suite builds the site and checks its pages offline; this opens each
def test_every_page_loads_without_console_errors(site, served, browser_ready):
    from browser import browser_page
    with browser_page(served + "index.html") as page:
        failed, foreign = [], []
        # a request cut short by the next navigation (ERR_ABORTED) is not a failure of the page
        page.on("requestfailed", lambda r: failed.append(r.url) if "ERR_ABORTED" not in (r.failure or "") else None)
        page.on("request", lambda r: foreign.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", None) else None)
        problems = {}
        for p in pages(site):
            page.console_errors.clear(); failed.clear(); foreign.clear()
            page.goto(served + p, wait_until="load"); page.wait_for_timeout(200)
            errs = list(page.console_errors) + [f"failed request {u}" for u in failed] + [f"network request {u}" for u in foreign]
            if errs: problems[p] = errs[:5]
        assert not problems, problems

@pytest.mark.slow   # ~30 s of browser time (the app's own browser test stays in the default suite)
def test_figures_and_widgets_render(site, served, browser_ready, artifacts_dir):
    from browser import browser_page
    with_figs = [p for p in pages(site) if "plotly-graph-div" in (site/p).read_text()]
    with_widgets = [p for p in pages(site) if "application/vnd.jupyter.widget-view+json" in (site/p).read_text()]
    tutorials = [p for p in pages(site) if p.startswith("tutorials/")]
    assert with_figs, "no page has a plotly figure (index.ipynb keeps one)"
    for t in tutorials:  # tutorials keep real outputs: each shows at least one figure
        assert t in with_figs or t in with_widgets, f"{t} shows no figure"
    with browser_page(served + "index.html") as page:
        for p in sorted(set(with_figs) | set(with_widgets)):
            page.goto(served + p, wait_until="load")
            n_div = (site/p).read_text().count('class="plotly-graph-div"')
            if n_div:
                page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div svg.main-svg').length >= {n_div}", timeout=20_000)
            if p in with_widgets:
                page.wait_for_selector(".jupyter-widgets, .widget-container, .widget-box", timeout=20_000)
            assert not page.console_errors, (p, page.console_errors[:5])
        page.goto(served + (tutorials[0] if tutorials else "index.html"), wait_until="load")
        page.locator(".plotly-graph-div").first.scroll_into_view_if_needed(); page.wait_for_timeout(300)
        page.screenshot(path=str(artifacts_dir/"docs_figure.png"))
