# VIBES — the two set-up commands are `make demo` and `make test`.
VENV      ?= .venv
PY        := $(VENV)/bin/python
# torch is pinned to what the development machines carry; real users may drop the pin.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# where `make install-cpu` takes torch from: PyTorch's CPU wheels (no CUDA libraries; ~1.8 GB venv, not 6.2 GB)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
DATASET   ?= gtsrb
POOL      ?=
# empty: the defaults of `precompute run` (shared/protocol.py: fractions 1.0,0.1,0.01, 3 seeds,
# mlp,silhouette,knn,ridge,logme,hscore); e.g. make precompute SEEDS=2 FRACTIONS=1.0,0.1
FRACTIONS ?=
SEEDS     ?=
EVALUATORS ?=
PRECOMPUTE_ARGS ?=

.PHONY: install install-cpu test test-slow test-cpu-paths demo bench bench-league bench-evaluators bench-precompute bench-gpu lint precompute clean

install: $(VENV)/.installed

# a machine without a GPU (a laptop): the same install with torch from PyTorch's CPU wheel index.
# (`simulate` alone needs no torch at all: `pip install .`)
install-cpu:
	$(MAKE) install TORCH_SPEC="--index-url $(TORCH_CPU_INDEX) $(TORCH_SPEC)"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[precompute,dev]'
	touch $@

# The suite in two parts, both on every core and one worker more (pytest-xdist: many tests wait on the processes
# they start, so a third worker on 2 cores fills that time); pytest exits 5 when it collected no test: that is a
# failure here, said out loud.
#   make test       every test but those marked slow: the inner loop (about 2-3 min on 2 cores)
#   make test-slow  the end-to-end tests marked slow, which start the project's commands as processes: the README's
#                   commands, kill/resume, live workers (about 8 min on 2 cores; the longest start first,
#                   tests/conftest.py).  CI runs both.
TEST_WORKERS ?= $(shell python3 -c 'import os; print((os.cpu_count() or 1) + 1)' 2>/dev/null || echo auto)
PYTEST_XDIST = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=10
define no_tests_is_a_failure
rc=$$?; if [ $$rc -eq 5 ]; then echo "make $@: pytest collected no tests" >&2; fi; exit $$rc
endef

test: install
	@$(PYTEST_XDIST) -m "not slow"; $(no_tests_is_a_failure)

test-slow: install
	@$(PYTEST_XDIST) -m slow; $(no_tests_is_a_failure)

# the outputs promised byte-identical on every CPU, checked again with numpy's AVX-512 paths switched
# off (a CPU without them takes other SIMD paths; CI runs both ways)
test-cpu-paths: install
	NPY_DISABLE_CPU_FEATURES="AVX512_ICL X86_V4" $(PY) -m pytest -q \
	  tests/test_exactmath.py tests/test_strategies.py -k "exact or log or grid or outputs_they_gave_before"

demo: install
	$(PY) -m precompute.demo

bench: install
	$(PY) bench/bench_simulate.py $(BENCH_ARGS)

# the league over OpenCLIP's 38 published zero-shot results (../shared/openclip-results or $VIBES_OPENCLIP_RESULTS)
bench-league: install
	$(PY) bench/bench_league.py $(BENCH_LEAGUE_ARGS)

# evaluator costs (proxies, silhouette, mlp head) on synthetic features; e.g. BENCH_EVAL_ARGS="--skip-large mlp"
bench-evaluators: install
	$(PY) bench/bench_evaluators.py $(BENCH_EVAL_ARGS)

# the sweep's per-backbone costs on the device it finds (figures also in out/bench-precompute.json)
bench-precompute: install
	$(PY) bench/bench_precompute.py --json out/bench-precompute.json $(BENCH_PRE_ARGS)

# every GPU claim in one command (sweep sample + projection, extraction, heads, proxies, a 2-minute
# search, check of the CPU's timeouts) within --budget (default 8min); e.g. BENCH_GPU_ARGS="--budget 15min"
bench-gpu: install
	$(PY) bench/bench_gpu.py --json out/bench-gpu.json $(BENCH_GPU_ARGS)

lint: install
	$(PY) -m pip install -q ruff
	$(VENV)/bin/ruff check shared simulate precompute tests bench

precompute: install
	$(VENV)/bin/precompute run --dataset $(DATASET) $(if $(FRACTIONS),--fractions $(FRACTIONS)) \
	  $(if $(SEEDS),--seeds $(SEEDS)) $(if $(EVALUATORS),--evaluators $(EVALUATORS)) \
	  $(if $(POOL),--pool $(POOL)) $(PRECOMPUTE_ARGS)

clean:
	rm -rf out/ data/cache data/parts data/oracles
