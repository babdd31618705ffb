#!/usr/bin/env bash
# Distributed evaluation with torchrun (variables: tools/launch.sh).
set -euo pipefail
source "$(dirname "$0")/launch.sh"
check_usage 'CONFIG CKPT GPUS [test.py args]' "$@"
check_gpus "$3"
check_files CONFIG "$1" CKPT "$2"
torchrun_tool "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
