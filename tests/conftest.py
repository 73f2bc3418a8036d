import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INTERPWB_PROGRESS", "0")
import pytest, torch
from pathlib import Path

# Under pytest-xdist (scripts/test.sh runs 2 workers on 2 cores) each worker takes one thread: more would oversubscribe.
torch.set_num_threads(int(os.environ.get("INTERPWB_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")))
ARTIFACTS = Path(__file__).parent/"artifacts"  # screenshots etc. kept by browser tests (git-ignored)
SLOW = os.environ.get("INTERPWB_SLOW", "0") == "1"  # `make test-slow` sets it: long and many-trial tests run too

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long or many-trial tests; run by `make test-slow` (INTERPWB_SLOW=1)")

# Files whose tests take longest on a fresh machine (test_app builds the app's artifacts first: minutes). They are
# collected first so that, under `pytest -n 2 --dist loadfile --no-loadscope-reorder`, they start at once on one worker
# while the other works through the rest - instead of starting last and leaving a core idle.
LONG_FIRST = ["test_app.py", "test_docs.py", "test_run_command.py", "test_robustness.py", "test_mfr_ddp.py"]

def pytest_collection_modifyitems(config, items):
    rank = lambda item: LONG_FIRST.index(item.path.name) if item.path.name in LONG_FIRST else len(LONG_FIRST)
    items.sort(key=rank)  # stable: test order within a file is kept
    if SLOW: return
    skip = pytest.mark.skip(reason="slow tier: run with `make test-slow` (INTERPWB_SLOW=1)")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)

@pytest.fixture(scope="session")
def model():
    "The embedded SmolLM2-135M-Instruct (shared, do not mutate)."
    from interpwb.testing import embedded_model
    return embedded_model()

@pytest.fixture(scope="session")
def tiny():
    from interpwb.models import tiny_model
    return tiny_model()

@pytest.fixture
def artifacts_dir():
    ARTIFACTS.mkdir(exist_ok=True); return ARTIFACTS

@pytest.fixture
def browser_ready():
    from browser import browser_unavailable_reason
    why = browser_unavailable_reason()
    if why: pytest.skip(f"browser test skipped: {why}")
