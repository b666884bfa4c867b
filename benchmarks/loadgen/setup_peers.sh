#!/usr/bin/env bash
# Peer load generators, each in its own venv under benchmarks/loadgen/.venvs (git-ignored).
# Idempotent: a venv whose stamp exists is left alone.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="$HERE/.venvs"
PY311="${PY311:-python3}"
PY312="${PY312:-$HOME/.pyenv/versions/3.12.1/bin/python}"
GUIDELLM_VERSION=0.8.1
INFERENCE_PERF_VERSION=0.7.0
TORCH_VERSION=2.13.0  # CPU build; a bare `torch` would pull the multi-GB CUDA one
mkdir -p "$VENVS"

make_venv() {  # name python packages...
  local name=$1 python=$2; shift 2
  local venv="$VENVS/$name"
  if [[ -f "$venv/.installed" ]]; then return; fi
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "$@"
  touch "$venv/.installed"
}

if ! "$PY312" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
  echo "inference-perf needs Python >= 3.12: set PY312 (tried $PY312)" >&2
  exit 1
fi
make_venv guidellm "$PY311" "torch==$TORCH_VERSION" "guidellm==$GUIDELLM_VERSION"
make_venv inference-perf "$PY312" "inference-perf==$INFERENCE_PERF_VERSION"
"$VENVS/guidellm/bin/guidellm" --version || true
"$VENVS/inference-perf/bin/inference-perf" --help >/dev/null && echo "inference-perf $INFERENCE_PERF_VERSION ok"
