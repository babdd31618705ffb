#!/usr/bin/env bash
# Distributed training with torchrun (variables: tools/launch.sh).
set -euo pipefail
source "$(dirname "$0")/launch.sh"
check_usage 'CONFIG GPUS [train.py args]' "$@"
check_gpus "$2"
check_files CONFIG "$1"
torchrun_tool "$2" train.py "$1" --launcher pytorch "${@:3}"
