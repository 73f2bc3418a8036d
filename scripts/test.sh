#!/usr/bin/env bash
# The README's test command: bootstrap, then export the notebooks and check the committed package matches, run the
# notebooks (nbdev_test, default flags: `#| slow` cells skipped) and pytest on tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 INTERPWB_PROGRESS=0 PYTHONWARNINGS=ignore
# Browser tests need Debian chromium: install it when we are root and it is missing; otherwise they skip, saying why.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test] installing Debian chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[test] could not install chromium; browser tests will skip"
fi
# The docs test builds the site, whose first build installs vendored JS from the npm registry.
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null) || echo "[test] no npm: the docs test will fail"
fi
echo "[test] nbdev_export + check that interpwb/ matches the notebooks"
.venv/bin/nbdev_export
if [ -d .git ] && ! git diff --quiet -- interpwb; then
  echo "[test] FAIL: interpwb/ differs from what nbdev_export makes from nbs/ (edit notebooks, export, commit):"
  git --no-pager diff --stat -- interpwb; exit 1
fi
if [ -d .git ] && [ -n "$(git ls-files --others --exclude-standard -- interpwb)" ]; then
  echo "[test] FAIL: nbdev_export made files that are not committed:"; git ls-files --others --exclude-standard -- interpwb; exit 1
fi
echo "[test] nbdev_test (notebooks, slow cells skipped)"
# one torch thread per notebook kernel per core: more would oversubscribe the cores (and inflate CPU time by spinning)
nb_threads=$(( $(nproc) / ${NB_WORKERS:-2} )); [ "$nb_threads" -ge 1 ] || nb_threads=1
OMP_NUM_THREADS=$nb_threads .venv/bin/nbdev_test --n_workers "${NB_WORKERS:-2}" --timing
echo "[test] pytest tests/ (${TEST_WORKERS:-2} workers, one test file per worker at a time)"
.venv/bin/python -m pytest tests/ -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
