#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv), idempotently:
# a second run with unchanged install files returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${MOPRO_VENV:-.venv}
STAMP="$VENV/.mopro-install-stamp"
want=$(cat setup.cfg pyproject.toml constraints.txt tools/misc/setup_env.sh \
    tools/misc/install_detectron2.py mopro/transfer/d2_install.py \
    | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
quiet() {  # pip's notes about this machine's local mirrors are noise
    "$@" 2>&1 | grep -v -e 'is ignored: it is neither' || true
    return "${PIPESTATUS[0]}"
}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    python3 -m venv "$VENV"
fi
echo "[setup] installing mopro and the tested dependency set (constraints.txt) into $VENV"
quiet "$VENV/bin/python" -m pip install -q -e ".[detectron2,tests,lint]" \
    -c constraints.txt
echo "[setup] installing detectron2"
"$VENV/bin/python" tools/misc/install_detectron2.py
"$VENV/bin/python" -c "import mopro, detectron2.modeling, mmpretrain, liblinear" \
    || { echo "[setup] error: the environment does not import" >&2; exit 1; }
echo "$want" > "$STAMP"
echo "[setup] environment ready: $VENV"
