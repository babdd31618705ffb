#!/usr/bin/env bash
# Distributed training with torchrun (variables: tools/dist_launch.sh).
set -euo pipefail
source "$(dirname "$0")/dist_launch.sh"
dist_launch train.py 'CONFIG GPUS [train.py args]' "$@"
