# The two commands (see README.md): `make run` starts the workbench, `make test` runs the whole default suite.
.PHONY: run test test-slow bench docs setup execute mutants
setup:
	bash scripts/bootstrap.sh
run:
	bash scripts/run_workbench.sh
test:
	bash scripts/test.sh
test-slow:  ## long experiments too (`#| slow` cells)
	bash scripts/bootstrap.sh && .venv/bin/nbdev_test --flags slow --n_workers 1 && INTERPWB_SLOW=1 HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/ -m slow
docs:  ## render every notebook into the static site in site/ (offline)
	bash scripts/bootstrap.sh && .venv/bin/python scripts/build_docs.py
bench:
	bash scripts/bootstrap.sh && for f in benchmarks/bench_*.py; do .venv/bin/python $$f; done
execute:  ## re-run one notebook in a kernel and save its outputs: make execute NB=nbs/tutorials/k_steering.ipynb
	bash scripts/bootstrap.sh && HF_HUB_OFFLINE=1 .venv/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=-1 "$(NB)"
mutants:  ## mutation testing of the method modules against the fast behavioural tests (mutmut; config in pyproject.toml)
	bash scripts/bootstrap.sh && .venv/bin/python -m pip install -q mutmut==3.8.1 && rm -rf mutants && \
		HF_HUB_OFFLINE=1 INTERPWB_PROGRESS=0 INTERPWB_THREADS=1 .venv/bin/mutmut run --max-children $${JOBS:-2}; \
		.venv/bin/mutmut results
