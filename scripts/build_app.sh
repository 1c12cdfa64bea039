#!/usr/bin/env bash
# Build the one-folder app dist/vdiff/ with PyInstaller (build.spec), print its size, and run its
# self-test offscreen. Exits non-zero when the build or the self-test fails.
#
# Run from anywhere after the README set-up (.venv with vdiff installed); installs PyInstaller into
# .venv when it is missing. The CUDA variant: install the CUDA build of torch (and onnxruntime-gpu) into
# .venv first, then run this script unchanged (docs/packaging.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=.venv/bin/python
if [[ ! -x $PYTHON ]]; then
    echo "build_app: no .venv here; set it up first (README: python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[test]')" >&2
    exit 2
fi
if ! $PYTHON -c "import PyInstaller" 2>/dev/null; then
    echo "build_app: installing PyInstaller (the 'build' extra) into .venv"
    .venv/bin/pip install --quiet -e '.[build]'
fi

started=$(date +%s)
$PYTHON -m PyInstaller --noconfirm --log-level WARN build.spec
built=$(date +%s)
APP=dist/vdiff/vdiff
if [[ ! -x $APP ]]; then
    echo "build_app: the build made no $APP" >&2
    exit 1
fi
size=$(du -sh dist/vdiff | cut -f1)
echo "build_app: built dist/vdiff in $((built - started)) s: $size ($(find dist/vdiff -type f | wc -l) files)"

# the bundle's own self-test: no display, no network, caches in a temporary folder
echo "build_app: running $APP --self-test"
if ! env -u DISPLAY -u WAYLAND_DISPLAY QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 "$APP" --self-test; then
    echo "build_app: the bundle's self-test FAILED" >&2
    exit 1
fi
echo "build_app: dist/vdiff is ready ($size); run dist/vdiff/vdiff"
