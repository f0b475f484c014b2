# The two commands of the README:  `make demo`  and  `make test`.
# Both create .venv on first use. torch goes in before the package (whose `torch>=2.4`
# would let pip pick a build): a torch already in .venv is kept (your own build);
# else, where no NVIDIA GPU answers (nvidia-smi absent or failing), torch==2.13.0 (on the
# project machine the CPU build, from wheels on its disk: no download); where one does,
# plain `torch` from PyPI, a CUDA build on Linux. `make TORCH='torch==2.x --index-url ...'`
# picks another (README: Two commands).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.duiit-installed
RAY    := $(VENV)/.duiit-ray-installed
DEMO   ?= demo-out
TORCH  ?= $(if $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu),torch,torch==2.13.0)

.PHONY: demo test setup lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The optional `ray` extra: the tests run the grid on a real (local) Ray cluster.
$(RAY): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(RAY)

demo: $(STAMP)
	$(BIN)/duiit demo --out $(DEMO) --force

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

# Two pytest-xdist workers, a test file each at a time (a file's fixtures, such as the Ray
# cluster, start once): the suite's many subprocess and single-thread tests overlap.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: lint $(RAY)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) $(DEMO)
