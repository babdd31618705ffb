#!/usr/bin/env bash
# Training on a Slurm cluster (variables: tools/launch.sh).
set -euo pipefail
source "$(dirname "$0")/launch.sh"
check_usage 'PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]' "$@"
check_files CONFIG "$3"
srun_tool "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm "${@:5}"
