#!/usr/bin/env bash
# Set up if needed, then run the unit tests and nbval on the committed notebooks.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
exec "${MSLR_VENV:-.venv}/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env "$@"
