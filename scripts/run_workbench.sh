#!/usr/bin/env bash
# The README's run command: bootstrap, make sure the embedded model is de-quantised and cached, then start the
# workbench app (Voila, app/workbench.ipynb) on 127.0.0.1 and print its URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1
PORT=${PORT:-8888}
# the model is de-quantised and cached once; the app's Voila template (lab without CDN links) is written to app/.voila
.venv/bin/python -c "from interpwb.models import load_model; from interpwb.app.voila import offline_voila_template; offline_voila_template('app/.voila'); m = load_model(); print('[run] embedded model ready:', m.cfg.model_name)"
export JUPYTER_PATH="$PWD/app/.voila${JUPYTER_PATH:+:$JUPYTER_PATH}"
# The access token travels in the environment (JUPYTER_TOKEN, read by Jupyter's identity provider), never on the
# command line, where every local user could read it with `ps`. Set JUPYTER_TOKEN yourself to keep a fixed one.
JUPYTER_TOKEN=${JUPYTER_TOKEN:-$(.venv/bin/python -c "import secrets; print(secrets.token_hex(16))")}
export JUPYTER_TOKEN
echo "[run] workbench: http://127.0.0.1:${PORT}/?token=${JUPYTER_TOKEN}  (the first launch trains and caches the panels' artifacts: minutes; reload when it says so)"
cd app && exec ../.venv/bin/voila workbench.ipynb --no-browser --port="$PORT" --Voila.ip=127.0.0.1 --Voila.auto_token=True --template=interpwb-offline
