#!/usr/bin/env bash
# The GPU checks of docs/speed.md in one command, one JSON:
#   bash benchmarks/run_gpu_checks.sh --out benchmarks/gpu_checks_h200.json
# On a GPU machine with torch but no network, first give it the folder of
# wheels made by tools/misc/gpu_wheels.py where the package registry answers:
#   bash benchmarks/run_gpu_checks.sh --wheels .whl --out gpu_checks.json
# The wheels go into MOPRO_GPU_SITE (default /tmp/mopro-gpu-site), put on
# PYTHONPATH with the folder's site/ (detectron2's Python package) and this
# checkout. Other options are tools/analysis_tools/gpu_checks.py's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--wheels" ]; then
    wheels=${2:?usage: run_gpu_checks.sh [--wheels DIR] --out FILE ...}
    shift 2
    site=${MOPRO_GPU_SITE:-/tmp/mopro-gpu-site}
    shopt -s nullglob
    files=("$wheels"/*.whl)
    if [ ${#files[@]} -eq 0 ]; then
        echo "error: no wheels in $wheels (tools/misc/gpu_wheels.py makes them)" >&2
        exit 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "${files[@]}"
    echo "[gpu checks] installed ${#files[@]} wheels into $site"
    export PYTHONPATH="$PWD:$site:$wheels/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" tools/analysis_tools/gpu_checks.py "$@"
