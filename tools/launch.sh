# Sourced by the launchers (dist_train.sh, dist_test.sh, slurm_train.sh,
# slurm_test.sh): their argument checks and their torchrun and srun
# commands.
# torchrun: NNODES, NODE_RANK, MASTER_ADDR, PORT (several nodes: on every
# node). srun: GPUS (default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS. Both: PYTHON, the interpreter (default: python).

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# check_usage USAGE ARGS...: at least as many ARGS as USAGE has words
# before its [options], else the usage line and exit status 2.
check_usage() {
    local usage=$1 words
    shift
    read -ra words <<< "${usage%%\[*}"
    if [ $# -lt "${#words[@]}" ]; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
}

# check_gpus GPUS: a positive integer, else one line and exit status 2.
check_gpus() {
    if ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: GPUS must be a positive integer, got '$1'" >&2
        exit 2
    fi
}

# check_files NAME PATH [NAME PATH ...]: each PATH is a file, else one line
# naming it and exit status 2, before any process is launched (torchrun
# would start every rank to fail on it).
check_files() {
    while [ $# -gt 0 ]; do
        if [ ! -f "$2" ]; then
            echo "$0: $1 '$2': no such file" >&2
            exit 2
        fi
        shift 2
    done
}

# torchrun_tool GPUS TOOL ARGS...: tools/TOOL on GPUS processes per node.
torchrun_tool() {
    local gpus=$1 tool=$2
    shift 2
    PYTHONPATH="$TOOLS/..:${PYTHONPATH:-}" \
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$gpus" \
        --master_port="${PORT:-29500}" \
        "$TOOLS/$tool" "$@"
}

# srun_tool PARTITION JOB_NAME TOOL ARGS...: tools/TOOL as a Slurm job of
# GPUS tasks, one per GPU.
srun_tool() {
    local partition=$1 job_name=$2 tool=$3 gpus_per_node=${GPUS_PER_NODE:-8}
    shift 3
    # SRUN_ARGS split into words on purpose
    PYTHONPATH="$TOOLS/..:${PYTHONPATH:-}" \
    exec srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"$gpus_per_node" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="$gpus_per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "${PYTHON:-python}" -u "$TOOLS/$tool" "$@"
}
