#!/usr/bin/env bash
# The LeRobot reader's own venv (.venv/lerobot-reader, inside the ignored .venv/) for
# tests/unit/test_lerobot_io.py, which reads `vla dataset export-lerobot` outputs with LeRobot's
# LeRobotDataset (scripts/lerobot_read.py). About 7 min and 6.3 GB on a 2-core machine.
# A separate venv because lerobot-dataset pins huggingface-hub<0.36 and .venv's transformers needs newer.
# Idempotent: a stamp file names this script's hash. Undeclared by the package, ledataset imports torch and
# torchvision; PyPI's torchvision is a CUDA build that fails beside the CPU torch .venv uses, so this venv
# takes the CUDA torch 2.14.1 + torchvision 0.29.1 pair (it runs on the CPU; several GB on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEROBOT_VENV:-.venv/lerobot-reader}
PY=${PYTHON:-python3}
STAMP="$VENV/.ready-$(sha1sum scripts/lerobot_reader_env.sh | cut -c1-12)"
[ -f "$STAMP" ] && exit 0

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" install "lerobot-dataset==0.4.4"
HF_HUB_OFFLINE=1 "$VENV/bin/python" -c "import ledataset.datasets.lerobot_dataset"
rm -f "$VENV"/.ready-*
touch "$STAMP"
echo "lerobot_reader_env: $VENV ready in $(( $(date +%s) - start )) s"
