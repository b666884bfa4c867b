#!/usr/bin/env bash
# Run a servesweep spec through the local KFP pipeline on a GPU host that has torch + transformers but
# no network (the `device` machine): install the carried wheels, run, pack the lake and logs into $OUT.
#   usage: bash benchmarks/gpu/run_on_device.sh SPEC RUN_ID [TIME_LIMIT_S]
set -uo pipefail
spec=$1 run_id=$2 limit=${3:-520}
out=${OUT:-/tmp/servesweep-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site .whl/sdist/*.tar.gz \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$out/gpu.csv"
timeout "$limit" python3 -m servesweep.cli run "$spec" --run-id "$run_id" --lake lake-gpu --pipeline-root runs-gpu
status=$?
if [ "$status" -ne 0 ]; then  # cut short: publish the points the sweep finished
  pkill -f "transformers.cli.transformers" ; pkill -f vllm.entrypoints
  python3 -m servesweep.cli salvage --pipeline-root runs-gpu --lake lake-gpu
fi
tar czf "$out/lake-$run_id.tgz" lake-gpu 2>/dev/null
tar czf "$out/logs-$run_id.tgz" runs-gpu/*.log /tmp/servesweep-servers-*/*/logs 2>/dev/null
echo "pipeline exit status: $status"
exit $status
