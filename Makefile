# trtforge: `make demo` runs the pipeline on the digits example; `make test` runs the test suite.
.PHONY: setup demo test lint bench clean

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/trtforge run examples/digits/trtforge.toml -w runs/digits

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check pipeline calibration plugins trtforge/__init__.py trtforge/__main__.py trtforge/common tests benchmarks examples tools
	.venv/bin/mypy

bench: setup
	.venv/bin/python benchmarks/run_all.py

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
