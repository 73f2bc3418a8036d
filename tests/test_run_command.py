"The README's run command really starts the workbench on 127.0.0.1 and prints a URL that answers."
import os, re, signal, subprocess, tempfile, time, urllib.error, urllib.request
from pathlib import Path
from browser import free_port

ROOT = Path(__file__).parents[1]

def test_make_run_serves_the_workbench_and_prints_its_url():
    port, home = free_port(), tempfile.mkdtemp(prefix="run-home-")
    env = {**os.environ, "PORT": str(port), "HOME": home, "JUPYTER_CONFIG_DIR": f"{home}/jupyter",
           "JUPYTER_RUNTIME_DIR": f"{home}/runtime", "IPYTHONDIR": f"{home}/ipython",
           "INTERPWB_CACHE": os.environ.get("INTERPWB_CACHE", str(Path.home()/".cache"/"interpwb"))}
    proc = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines, url = [], None
    try:
        t0 = time.time()
        while time.time() - t0 < 240 and url is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None: break
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/\S+)", line)
            if m and "[run]" in line: url = m.group(1)
        assert url, "no URL printed:\n" + "".join(lines[-30:])
        assert f":{port}/" in url
        body = None
        while time.time() - t0 < 240:
            try:
                with urllib.request.urlopen(url, timeout=10) as r: body = r.read().decode(errors="replace"); break
            except OSError: time.sleep(1)
        assert body is not None and ("jupyter" in body.lower() or "voila" in body.lower()), (body or "")[:500]
        token = re.search(r"token=(\w+)", url).group(1)
        cmdlines = [f.read_bytes() for f in Path("/proc").glob("[0-9]*/cmdline") if f.exists()]   # what `ps` shows
        assert not any(token.encode() in c for c in cmdlines), "the token is visible to every local user in `ps`"
        wrong = url.replace(token, "0" * len(token))
        try:   # a wrong token must not get the app: Jupyter sends it to its login page instead
            with urllib.request.urlopen(wrong, timeout=60) as r: refused = "/login" in r.geturl()
        except urllib.error.HTTPError as e: refused = e.code in (401, 403)
        assert refused, "a wrong token was accepted"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
