#!/usr/bin/env bash
# DEVICE side (nvidia-h200, no network): servesweep's pipeline with vLLM's CUDA build on the local GPU.
# Carried: the project's wheels (.whl, benchmarks/gpu/fetch_project_wheels.sh) and vLLM in chunks (.x/p*,
# shared/gpu/fetch-vllm-wheels.sh). The machine stays warm ~30 s between calls, keeping /tmp/site,
# /root/stage and /root/lake-h200, so the calls below run back to back (benchmarks/README.md).
#   bash benchmarks/gpu/h200.sh project             install .whl into /tmp/site, check imports, GPU facts
#   bash benchmarks/gpu/h200.sh relay DIR            copy a vLLM chunk into /root/stage
#   bash benchmarks/gpu/h200.sh vllm DIR             assemble + install vLLM from the chunks (DIR: the last one)
#   bash benchmarks/gpu/h200.sh run SPEC RUN_ID SECS the pipeline, cut at SECS (then salvaged); lake + logs to $OUT
#   bash benchmarks/gpu/h200.sh compare SPEC POINT...  servesweep vs vllm bench (compare_clients.py)
set -uo pipefail
out=${OUT:-/tmp/servesweep-out}; mkdir -p "$out"
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
LAKE=/root/lake-h200 RUNS=/root/runs-h200
t0=$(date +%s); el(){ echo "[$(( $(date +%s) - t0 )) s]"; }

case ${1:-} in
project)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .whl/sdist/*.tar.gz || exit 1
  rm -rf /tmp/site/bin
  python3 -c "import kfp.local, duckdb, pyarrow, matplotlib, pipelines.kfp_pipeline, components.sweep, servesweep.cli, \
servesweep.analysis.report; print('project imports ok; kfp', kfp.__version__, 'duckdb', duckdb.__version__)" || exit 1
  python3 -m pip show protobuf pyarrow torch transformers tokenizers numpy 2>/dev/null | grep -E "^(Name|Version)" | paste - -
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit,driver_version,pci.bus_id \
    --format=csv | tee "$out/gpu.csv"
  nvidia-smi | sed -n 3p; nproc; free -g | sed -n 2p; el ;;
relay)
  mkdir -p /root/stage && cp "$2"/part.* /root/stage/ && ls -l /root/stage; el ;;
vllm)
  bash "$2/vllm-install.sh" || exit 1; el ;;
run)
  spec=$2 run_id=$3 limit=${4:-520}
  timeout "$limit" python3 -m servesweep.cli run "$spec" --run-id "$run_id" --lake $LAKE --pipeline-root $RUNS
  status=$?
  if [ "$status" -ne 0 ]; then  # cut short or failed: stop its servers, publish the points the sweep finished
    pkill -f kfp.dsl.executor_main; pkill -f vllm.entrypoints; sleep 3
    python3 -m servesweep.cli salvage --pipeline-root $RUNS --lake $LAKE
  fi
  tar czf "$out/lake-h200.tgz" -C /root lake-h200 2>/dev/null
  tar czf "$out/logs-$run_id.tgz" $RUNS/$run_id.log /tmp/servesweep-servers-*/*/logs $RUNS/*/for-loop-*/deploy-server/logs 2>/dev/null
  echo "pipeline $run_id exit status: $status $(el)"; exit $status ;;
compare)
  spec=$2; shift 2
  timeout "${CMP_LIMIT:-400}" python3 benchmarks/gpu/compare_clients.py run "$spec" "$out/clients.json" "$@"; status=$?
  tar czf "$out/compare-logs.tgz" -C /root compare-clients/logs compare-clients/vllm-results 2>/dev/null
  echo "compare exit status: $status $(el)"; exit $status ;;
*) sed -n 2,12p "$0"; exit 2 ;;
esac
