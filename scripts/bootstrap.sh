#!/usr/bin/env bash
# One-time set-up of .venv for `make demo` / `make test`: idempotent, safe as root or not.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.bootstrap-$(cat setup.py scripts/bootstrap.sh | sha1sum | cut -c1-12)"
[ -f "$STAMP" ] && exit 0

if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing libusb-1.0-0 (open3d needs it)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "bootstrap: WARNING libusb-1.0-0 missing and not root; open3d may fail to import (apt-get install libusb-1.0-0)" >&2
  fi
fi

# With a system ROS 2 sourced (a robot workstation), reuse its rclpy and never install the ROS wheels.
EXTRAS=dev,ros,remote,scale
VENV_FLAGS=()
if [ -n "${ROS_DISTRO:-}" ]; then
  EXTRAS=dev,remote,scale
  VENV_FLAGS=(--system-site-packages)
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "${VENV_FLAGS[@]}" "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# The CPU build of torch first, so `torch>=...` in setup.py never pulls a multi-GB CUDA build.
"$VENV/bin/python" -c 'import torch' 2>/dev/null || "${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -e ".[$EXTRAS]"
# The maintained openpi client (the remote backend's transport): its metadata pins numpy<2, which its code
# does not need and which would downgrade the whole environment, so its dependencies come from `remote`.
"${PIP[@]}" install --no-deps "openpi-client==0.1.2"
rm -f "$VENV"/.bootstrap-*
touch "$STAMP"
echo "bootstrap: $VENV ready (extras: $EXTRAS)"
