#!/usr/bin/env bash
# Create the virtual environment, install the pinned requirements and prepare the data.
# Idempotent: a second run only checks that everything is in place.
#   MSLR_VENV   environment folder (default: .venv in the repository)
#   PYTHON      interpreter used to create it (default: python3)
# A torch already importable in the environment is kept (for example a CUDA build);
# otherwise torch==2.13.0 is installed first, before anything that depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${MSLR_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
python="$venv/bin/python"

if ! "$python" -c "import torch" 2>/dev/null; then
    echo "installing torch==2.13.0"
    "$python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi

stamp="$venv/.mslr-installed"
wanted="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "installing requirements.txt and mslr_utils"
    "$python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
    echo "$wanted" > "$stamp"
fi

"$python" -m mslr_utils.data.reviews prepare
