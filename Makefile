# Two commands do all the set-up on a fresh machine with Python 3 and pip:
#   make demo   install into .venv, train a small LM with every monitor on
#   make test   install into .venv, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# Linux x86-64 with no torch yet: take the CPU build pinned here first; a bare
	@# `torch` requirement would pull a multi-GB CUDA build. The package itself asks torch>=2.3.
	@if [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ] && ! $(BIN)/python -c "import torch" 2>/dev/null; then \
		$(BIN)/pip install --quiet torch==2.13.0; \
	fi
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trainvitals train-lm

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
