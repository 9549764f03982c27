# sovereign: two commands do all set-up on a fresh machine.
#   make run   - venv, dependencies, both local tiers (assembled once per machine into the shared
#                weights cache, verified), server on loopback
#   make test  - the same set-up, then the whole test suite

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
# llama-cpp-python builds from source (~10 min on 2 cores); the wheel is cached outside the
# checkout so every later venv, clone and CI run on this machine reuses it.
WHEELHOUSE  ?= $(HOME)/.cache/sovereign/wheels
LLAMA_VER   := 0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
PYTEST_ARGS ?=
# voice: the Piper neural voice (GPL-3 engine, an optional extra); EXTRAS=dev leaves it out.
EXTRAS      ?= dev,voice

.PHONY: run test install weights bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@# bubblewrap gives the tool sandbox a private filesystem; without it the sandbox falls back.
	@command -v bwrap >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
		|| echo "note: bubblewrap not installed; the sandbox falls back to unshare + resource limits"; }
	@# Debian's chromium runs the web console's browser tests (Playwright drives it; no browser download).
	@command -v chromium >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "note: chromium not installed; the console's browser tests will skip"; }
	@# Perception engines run as separate processes: espeak-ng (fallback voice), tesseract (second OCR engine).
	@command -v espeak-ng >/dev/null 2>&1 && command -v tesseract >/dev/null 2>&1 || { (apt-get update -qq && \
		apt-get install -y -qq espeak-ng tesseract-ocr tesseract-ocr-eng) >/dev/null 2>&1 \
		|| echo "note: espeak-ng / tesseract not installed; speech and OCR fall back to piper and rapidocr only"; }
	@# flite: three more voices for the transcription benchmark's speech set (benchmarks/ only).
	@command -v flite >/dev/null 2>&1 || { (apt-get update -qq && apt-get install -y -qq flite) >/dev/null 2>&1 \
		|| echo "note: flite not installed; bench_transcribe.py leaves its voices out"; }
	@# ngircd is the real IRC server the channel tests start on loopback (never as a service).
	@command -v ngircd >/dev/null 2>&1 || test -x /usr/sbin/ngircd || { (apt-get update -qq && apt-get install -y -qq ngircd) >/dev/null 2>&1 \
		|| echo "note: ngircd not installed; the IRC channel tests are skipped"; }
	@mkdir -p $(WHEELHOUSE)
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VER)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_VER) once (cached in $(WHEELHOUSE))"; \
		CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE)" \
			$(PYTHON) -m pip wheel --no-deps llama-cpp-python==$(LLAMA_VER) -w $(WHEELHOUSE); \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --find-links $(WHEELHOUSE) -e '.[$(EXTRAS)]'
	@touch $@

# Assembles the models of every tier ([kernel.tiers]: 0.5B instant, 1.5B tools) into the shared
# cache (~/.cache/sovereign/models or $$SOVEREIGN_MODELS_DIR); a verified copy is not rebuilt.
weights: install
	$(BIN)/sovereign weights assemble

run: weights
	$(BIN)/sovereign serve

test: weights
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .cache
