#!/usr/bin/env bash
# Set up, then run every notebook headless with a profile (default: "default").
# Results go to figures/, executed notebooks to runs/executed/<profile>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
exec "${MSLR_VENV:-.venv}/bin/python" -m mslr_utils.runner run --profile "${1:-default}" "${@:2}"
