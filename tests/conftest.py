import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INTERPWB_PROGRESS", "0")
import pytest, torch
from pathlib import Path

torch.set_num_threads(int(os.environ.get("INTERPWB_THREADS", "2")))
ARTIFACTS = Path(__file__).parent/"artifacts"  # screenshots etc. kept by browser tests (git-ignored)

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
