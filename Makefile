# talkfarm: `make demo` renders out/demo.mp4, `make test` runs the fast suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED := $(wildcard ../shared/assets)
DEMO_IMAGE := $(if $(SHARED),../shared/assets/face_grace_hopper.jpg,assets/face_grace_hopper.jpg)
DEMO_AUDIO := $(if $(SHARED),../shared/assets/speech_cmu_arctic_a0007_4s.wav,assets/speech_cmu_arctic_a0007_4s.wav)
# chromium: the QC report test opens the HTML page headless. flite, festival and its voices:
# the motion corpus speaks with three engines (jobs/corpus/engines.py).
APT_PACKAGES := espeak-ng redis-server chromium flite festival festvox-kallpc16k festvox-kdlpc16k \
	festvox-us-slt-hts

.PHONY: setup demo test test-slow bench clean

setup: $(STAMP)

# torch first, pinned: it resolves to the local CPU build; an unpinned torch pulled in by a
# dependency would fetch gigabytes of CUDA wheels.
$(STAMP): pyproject.toml
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
		echo "installing apt packages:$$missing"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(BIN)/talkfarm render --image $(DEMO_IMAGE) --audio $(DEMO_AUDIO) -o out/demo.mp4

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow"

bench: $(STAMP)
	$(BIN)/python bench/render.py

clean:
	rm -rf out test-output .pytest_cache
