"""A real browser on a Voila app, for interpwb's browser tests: Debian Chromium driven by Playwright.

Never `playwright install` (it downloads a browser and fails offline): install Debian's `chromium` (`apt-get install
chromium`, which `make test` does when run as root). Tests that need it use the `browser_ready` fixture (conftest.py),
which skips them, saying why, where the browser, Playwright or Voila is missing.
"""
from __future__ import annotations
import contextlib, os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path
from urllib.parse import urlparse
from interpwb.app.voila import offline_voila_template, OFFLINE_TEMPLATE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

def browser_unavailable_reason() -> str|None:
    "Why browser tests cannot run here (None when they can)."
    if not Path(CHROMIUM).exists(): return f"Debian chromium is not installed ({CHROMIUM}); run `apt-get install chromium` as root"
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return "the `playwright` Python package is not installed"
    if shutil.which("voila", path=str(Path(sys.executable).parent)) is None and shutil.which("voila") is None:
        return "voila is not installed"
    return None

def free_port() -> int:
    "A free TCP port on 127.0.0.1."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

@contextlib.contextmanager
def voila_server(notebook:str|Path, # the app notebook
                 timeout:float=120, # seconds to wait for the port
                 env:dict|None=None, # extra environment variables for the server (and its kernels)
                ):
    "Serve `notebook` with Voila on 127.0.0.1; yields the app URL; stops the server (and its kernels) afterwards."
    notebook = Path(notebook).resolve()
    port, token = free_port(), "interpwb-test"
    home = Path(tempfile.mkdtemp(prefix="voila-home-"))
    e = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home/"jupyter"), "IPYTHONDIR": str(home/"ipython"),
         "JUPYTER_RUNTIME_DIR": str(home/"runtime"), "HF_HUB_OFFLINE": "1", "INTERPWB_PROGRESS": "0",
         "INTERPWB_CACHE": os.environ.get("INTERPWB_CACHE", str(Path.home()/".cache"/"interpwb")), **(env or {})}

    data = offline_voila_template(home/"share")  # lab template without CDN links: nothing is fetched from the internet
    e["JUPYTER_PATH"] = os.pathsep.join([str(data)] + ([e["JUPYTER_PATH"]] if e.get("JUPYTER_PATH") else []))
    voila = Path(sys.executable).parent/"voila"
    cmd = [str(voila if voila.exists() else "voila"), str(notebook.name), "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", f"--token={token}", f"--template={OFFLINE_TEMPLATE}", "--VoilaConfiguration.file_allowlist=['.*']"]
    log = open(home/"voila.log", "w")
    proc = subprocess.Popen(cmd, cwd=notebook.parent, env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if proc.poll() is not None: raise RuntimeError(f"voila exited early: {(home/'voila.log').read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0: break
            time.sleep(0.3)
        else: raise TimeoutError(f"voila did not open port {port} within {timeout}s")
        yield f"http://127.0.0.1:{port}/?token={token}"
    finally:

        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired): proc.wait(10)
        with contextlib.suppress(ProcessLookupError): os.killpg(proc.pid, signal.SIGKILL)
        log.close(); shutil.rmtree(home, ignore_errors=True)

def _is_external(url:str) -> bool:
    "Whether a browser request leaves this machine (http(s) to a host other than 127.0.0.1/localhost)."

    u = urlparse(url)
    return u.scheme in ("http", "https", "ws", "wss") and u.hostname not in ("127.0.0.1", "localhost", "::1")

@contextlib.contextmanager
def browser_page(url:str, # page to open
                 viewport:tuple[int, int]=(1400, 1000), # width, height
                ):
    "A headless Debian Chromium page at `url`; console errors go to `page.console_errors`, off-machine requests to `page.external_requests`, HTTP errors to `page.bad_responses`."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.console_errors = []
            page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
            page.external_requests = []
            page.on("request", lambda r: page.external_requests.append(r.url) if _is_external(r.url) else None)
            page.bad_responses = []  # "403 http://..." for every response with an HTTP error status
            page.on("response", lambda r: page.bad_responses.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(url, timeout=120_000)  # Voila can take a while to start a kernel on a busy machine
            yield page
        finally: browser.close()
