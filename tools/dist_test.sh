#!/usr/bin/env bash
# Distributed evaluation with torchrun (variables: tools/dist_launch.sh).
set -euo pipefail
source "$(dirname "$0")/dist_launch.sh"
dist_launch test.py 'CONFIG CKPT GPUS [test.py args]' "$@"
