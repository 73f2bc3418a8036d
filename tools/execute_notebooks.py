"""Execute notebooks in place (in a real kernel) so their saved outputs are real: `python tools/execute_notebooks.py nbs/02_models.ipynb ...`"""
import os, sys, tempfile, time, nbformat
from nbclient import NotebookClient
from jupyter_client import KernelManager

os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
os.environ.setdefault("INTERPWB_PROGRESS", "0")  # saved outputs stay readable; users see live bars
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    # IPC sockets, not TCP ports: several kernels started at once on one machine raced for ports and hung
    km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(tempfile.mkdtemp(), "kernel"))
    NotebookClient(nb, km=km, timeout=3600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path) or "."}}).execute()
    nbformat.write(nb, path)
    print(f"{path}: executed in {time.time()-t0:.0f}s")
