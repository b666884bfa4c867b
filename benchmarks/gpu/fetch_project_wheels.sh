#!/usr/bin/env bash
# DEV machine (pip reaches PyPI). The project's own dependencies that the offline nvidia-h200 device image
# lacks, as cp312 manylinux wheels in DEST (git-ignored, carried with `carry: [DEST]`). pip resolves the
# whole tree for Python 3.12; what the device image already holds (KINDS.md's package list, below) and
# what the vLLM payload brings (shared/gpu/fetch-vllm-wheels.sh) is left out, except pydantic, which the
# vLLM payload also carries at the same version so the project imports before vLLM is installed.
#   usage: bash benchmarks/gpu/fetch_project_wheels.sh .whl
set -euo pipefail
DEST=${1:?usage: fetch_project_wheels.sh DEST}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$DEST"; DEST=$(cd "$DEST" && pwd); rm -f "$DEST"/*.whl
PLAT=(); for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_26 \
  manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do PLAT+=(--platform ${p}_x86_64); done
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 "${PLAT[@]}")
REPORT=$(mktemp); trap 'rm -f "$REPORT"' EXIT
# Pinned where the vLLM payload pins them, so /tmp/site ends with one version of each.
PINS=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5)
# Resolved by this machine's own Python 3.12 (the device's minor version, same platform), so sdist-only
# packages (kfp-server-api) resolve too; those travel as sdists and are built there without isolation.
PY312=${PY312:-python3.12}
# The extras the device run uses: KFP's local runner and the report (vLLM's CUDA build replaces [local]).
$PY312 -m pip install -q --dry-run --ignore-installed --report "$REPORT" "$ROOT[kfp,report]" "${PINS[@]}" 2>&1 | grep -v "^WARNING" || true
# On the device image already (KINDS.md), or in the vLLM payload: normalised names.
ON_DEVICE="torch triton numpy numba transformers tokenizers safetensors protobuf anyio idna h11 httpx httpcore
typing-extensions setuptools aiohttp aiosignal aiohappyeyeballs frozenlist multidict yarl propcache attrs pillow pyyaml
requests urllib3 certifi charset-normalizer psutil regex tqdm sentencepiece tiktoken py-cpuinfo cloudpickle einops
ninja uvloop prometheus-client click rich typer jinja2 markupsafe nvidia-ml-py msgpack six packaging filelock fsspec
huggingface-hub hf-xet pyarrow pandas python-dateutil matplotlib contourpy cycler fonttools kiwisolver pyparsing
tabulate markdown-it-py mdurl pygments shellingham grpcio scipy wrapt annotated-doc typing-inspect mypy-extensions
fastapi starlette uvicorn httptools websockets watchfiles python-multipart python-dotenv pydantic-extra-types
pydantic-settings email-validator dnspython pycountry openai jiter sniffio distro cachetools pyzmq msgspec tzdata
pytz zipp httpx2 httpcore2 truststore"
python3 - "$REPORT" "$DEST" $ON_DEVICE <<'PY'
import json, re, subprocess, sys
report, dest, *present = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
present = {norm(n) for n in present}
keep = [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.load(open(report))["install"]
        if norm(i["metadata"]["name"]) not in present and norm(i["metadata"]["name"]) != "servesweep"]
print("carrying:", " ".join(sorted(keep)))
open(dest + "/REQUIREMENTS", "w").write("\n".join(sorted(keep)) + "\n")
PY
mkdir -p "$DEST/sdist"; rm -f "$DEST"/sdist/*
while read -r req; do
  python3 -m pip download -q --no-deps "${TARGET[@]}" -d "$DEST" "$req" 2>/dev/null \
    || python3 -m pip download -q --no-deps --no-binary=:all: -d "$DEST/sdist" "$req" 2>/dev/null \
    || { echo "cannot download $req" >&2; exit 1; }
done < "$DEST/REQUIREMENTS"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(ls "$DEST"/sdist | wc -l) sdists, $(du -sh "$DEST" | cut -f1) in $DEST"
