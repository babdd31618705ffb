# The two set-up commands of the README; both create .venv when missing.
PYTHON := .venv/bin/python

.PHONY: env demo test

env:
	@bash tools/setup_env.sh

# main job: MoPro vs cross-entropy on the embedded noisy dataset (CPU)
demo: env
	$(PYTHON) tools/run_demo.py

test: env
	$(PYTHON) -m pytest -q
