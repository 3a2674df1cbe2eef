# Set-up and main entry points. Each target creates the virtual environment it needs.
VENV ?= .venv
PYTHON ?= python3
# the CPU build of torch; on a machine with a GPU use e.g. TORCH="torch>=2.1"
TORCH ?= torch==2.13.0
PRESET ?= cpu
BIN = $(VENV)/bin

.PHONY: book run test bench clean

$(BIN)/memrnn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# when make started: from an empty runs folder, `memrnn book run` records the time from here (.venv set-up included)
STARTED := $(shell date +%s)

book: $(BIN)/memrnn  ## execute every chapter at PRESET (cached runs are reused), then build the HTML
	$(BIN)/memrnn book run --preset $(PRESET) --started-at $(STARTED)

run: $(BIN)/memrnn  ## train and evaluate the GRU/LSTM x DeCu/VoCu/none grid only
	$(BIN)/memrnn grid --preset $(PRESET) --out runs

test: $(BIN)/memrnn
	$(BIN)/python -m pytest -q

bench: $(BIN)/memrnn
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs _build
