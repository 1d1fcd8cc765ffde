# Entry points. Each target sets up the environment first (scripts/setup_env.sh is idempotent).
#   make reproduce PROFILE=paper ARGS="--meld-root data/meld --mmimdb-hdf5 data/mmimdb/multimodal_imdb.hdf5"
PROFILE ?= default
ARGS ?=
PYTHON := $(or $(MSLR_VENV),.venv)/bin/python
export TQDM_DISABLE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export MPLBACKEND=Agg

.PHONY: setup main reproduce readme test

setup:
	bash scripts/setup_env.sh

# The main job: notebook 01 on the embedded review task, results in figures/01_reviews_mslr/.
main:
	bash scripts/reproduce.sh

# Every task notebook with data, over the profile's seeds, then notebooks 05 to 07;
# results in figures/reproduce/$(PROFILE)/, and the README's results section rewritten.
reproduce: setup
	$(PYTHON) -m mslr_utils.reproduce run --profile $(PROFILE) --update-readme $(ARGS)

readme:
	$(PYTHON) -m mslr_utils.reproduce readme --results figures/reproduce/$(PROFILE)

test:
	bash scripts/test.sh
