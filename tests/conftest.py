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

def pytest_collection_modifyitems(config, items):
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
