#!/usr/bin/env bash
# Evaluation on a Slurm cluster (variables: tools/launch.sh).
set -euo pipefail
source "$(dirname "$0")/launch.sh"
check_usage 'PARTITION JOB_NAME CONFIG CKPT [test.py args]' "$@"
check_files CONFIG "$3" CKPT "$4"
srun_tool "$1" "$2" test.py "$3" "$4" --launcher=slurm "${@:5}"
