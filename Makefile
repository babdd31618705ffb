# The two set-up commands of the README; both create .venv when missing.
PYTHON := .venv/bin/python

.PHONY: env demo test test-fast test-gpu lint

env:
	@bash tools/misc/setup_env.sh

# main job: MoPro vs cross-entropy on the embedded noisy dataset (CPU); the
# report and its pictures go to results/demo/, the runs to work_dirs/demo/
# (one intra-op thread: the committed report's figures; docs/demo.md)
demo: env
	OMP_NUM_THREADS=1 $(PYTHON) tools/run_demo.py

# the whole suite, its files spread over the cores (one thread each); tests
# marked `gpu` run where CUDA is available
test: env
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n auto --dist loadfile

# the suite without the tests marked `slow` (training runs and tools
# launched for minutes): a few minutes while developing
test-fast: env
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest -q -n auto --dist loadfile -m "not slow"

# only the CUDA tests (skipped, not failed, without a GPU)
test-gpu: env
	$(PYTHON) -m pytest -q -m gpu

# the house style (settings in setup.cfg; .pre-commit-config.yaml runs the
# same checks before each commit): fails on any finding, changes nothing
LINT_PATHS := mopro tools configs tests
lint: env
	$(PYTHON) -m flake8 $(LINT_PATHS)
	$(PYTHON) -m isort --check-only --diff $(LINT_PATHS)
	$(PYTHON) -m yapf --diff --recursive --parallel $(LINT_PATHS)
