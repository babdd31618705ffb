# Sourced by dist_train.sh and dist_test.sh: one torchrun command for both.
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, PORT on every node;
# PYTHON, the interpreter (default: python).

# dist_launch TOOL USAGE ARGS...: run tools/TOOL on GPUS processes per
# node, GPUS being the last of the words of USAGE before its [options]:
# TOOL gets the words before GPUS, --launcher pytorch, then the options.
dist_launch() {
    local tool=$1 usage=$2
    shift 2
    local words
    read -ra words <<< "${usage%%\[*}"
    local count=${#words[@]}
    if [ $# -lt "$count" ]; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
    local gpus=${!count}
    if ! [[ $gpus =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: GPUS must be a positive integer, got '$gpus'" >&2
        exit 2
    fi
    local here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    PYTHONPATH="$here/..:${PYTHONPATH:-}" \
    exec "${PYTHON:-python}" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$gpus" \
        --master_port="${PORT:-29500}" \
        "$here/$tool" "${@:1:count-1}" --launcher pytorch "${@:count+1}"
}
