# Every set-up step lives here: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-quick demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build that lies on disk, so that nothing pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	# resemblyzer ships the GE2E weights `audiotask import resemblyzer` reads (and the tests check
	# against); only its file is read, so none of its dependencies (webrtcvad builds from C) is needed
	$(BIN)/pip install --quiet --no-deps "resemblyzer>=0.1.3"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# the suite without the tests marked slow (about a quarter of the time), while working
test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(BIN)/audiotask demo --output demo-output

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache

# Sound event detection and clip classification on real recordings (benchmarks/real_recordings.py).
# `build` needs the network: Debian's archive (`apt-get download`, after one `apt-get update`) and
# PyPI (`pip download --no-deps`), about 0.8 GB of packages kept under REAL_ROOT/downloads.
# Training options: the README's small CRNN.
REAL_ROOT ?= benchmarks/.data/real-recordings
REAL_TRAIN := --model-option channels=[16,32,64] --model-option n_mels=32 --model-option hidden_size=64 \
	--batch-size 16 --learning-rate 3e-3 --num-workers 0 --seed 0

.PHONY: bench-real
bench-real: $(STAMP)
	$(BIN)/python benchmarks/real_recordings.py build --root $(REAL_ROOT)
	$(BIN)/python benchmarks/real_recordings.py run --root $(REAL_ROOT) --max-steps 2250 --train-option='$(REAL_TRAIN)'
	$(BIN)/python benchmarks/real_recordings.py run-clips --root $(REAL_ROOT) --max-steps 1000 --train-option='$(REAL_TRAIN)'
	$(BIN)/python benchmarks/real_recordings.py baseline-clips --root $(REAL_ROOT)
	$(BIN)/python benchmarks/real_conversations.py build $(REAL_ROOT) --output $(REAL_ROOT)/conversations
