"""The reproduction command: the smoke chain, skipping what is up to date, resuming a killed run."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import REPO_ROOT
from mslr_utils.reproduce import Reproduction, TASKS

TASK_NAMES = [t.name for t in TASKS]
ANALYSES = ["05_conductance", "06_prediction_similarity", "07_paper_tables"]


def reproduce(results, checkpoints, *extra, timeout=1500):
    command = [sys.executable, "-m", "mslr_utils.reproduce", "run", "--profile", "smoke",
               "--results", str(results), "--checkpoints", str(checkpoints), *extra]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def statuses(results):
    summary = json.loads((results / "reproduce_summary.json").read_text())
    return {(n["notebook"], n["seed"]): n["status"] for n in summary["notebooks"]}


@pytest.fixture
def chain(smoke_reproduction):
    return smoke_reproduction


def test_chain_runs_every_notebook(chain):
    root, completed = chain
    found = statuses(root / "results")
    for name in TASK_NAMES:
        assert found[(name, 0)] == "ran"
        assert found[(name, 1)] == "ran"
    for name in ANALYSES:
        assert found[(name, None)] == "ran"
    # One progress line per model and seed, not per batch or epoch.
    assert completed.stdout.count("run Keep: done after 2 epochs") == 2 * len(TASK_NAMES)
    assert "Executing Cell" not in completed.stdout


def test_chain_writes_paper_tables_and_significance(chain):
    root, _ = chain
    tables = root / "results" / "07_paper_tables"
    for name in ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "reviews"):
        summary = pd.read_csv(tables / f"{name}.csv")
        assert set(summary["seeds"]) == {2}, name
        assert {"mean", "std", "paper", "difference"} <= set(summary.columns)
    for task in TASKS:
        significance = pd.read_csv(tables / f"significance_{task.name}.csv")
        assert len(significance) == 6  # Keep, Smooth, Dynamic against Joint-global and MSES
        assert significance["t_test_p"].notna().any() or (significance["difference"] == 0).all()
        assert (significance["bootstrap_low"] <= significance["difference"] + 1e-12).all()
        assert (significance["difference"] <= significance["bootstrap_high"] + 1e-12).all()
    markdown = (tables / "paper_tables.md").read_text()
    assert "#### Table 3: MELD test F1 (%)" in markdown
    assert "#### Significance: 02_muse_stress (accuracy)" in markdown


def test_chain_writes_conductance_and_overlap(chain):
    root, _ = chain
    for task in TASK_NAMES:
        assert (root / "results" / "05_conductance" / f"conductance_{task}.png").stat().st_size > 0
        overlap = pd.read_csv(root / "results" / "06_prediction_similarity" / f"overlap_{task}.csv")
        assert set(overlap["seed"]) == {0, 1}


def test_seeds_share_test_items(chain):
    root, _ = chain
    import numpy as np

    for task in TASK_NAMES:
        first = np.load(root / "results" / task / "seed-0" / "test_predictions.npz")["y_true"]
        second = np.load(root / "results" / task / "seed-1" / "test_predictions.npz")["y_true"]
        assert np.array_equal(first, second), task


def test_second_run_skips_then_one_deletion_reruns_one(chain):
    root, _ = chain
    results, checkpoints = root / "results", root / "checkpoints"
    again = reproduce(results, checkpoints)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(statuses(results).values()) == {"skipped"}

    (results / "03_meld_sentiment" / "seed-1" / "table3_f1.csv").unlink()
    third = reproduce(results, checkpoints)
    assert third.returncode == 0, third.stderr[-3000:]
    found = statuses(results)
    assert found.pop(("03_meld_sentiment", 1)) == "ran"
    # The rerun loads its runs from checkpoints and writes identical files, so the analyses stay skipped.
    assert set(found.values()) == {"skipped"}
    assert (results / "03_meld_sentiment" / "seed-1" / "table3_f1.csv").is_file()


def test_killed_run_resumes_to_same_results(chain, tmp_path):
    root, _ = chain
    results, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    command = [sys.executable, "-m", "mslr_utils.reproduce", "run", "--profile", "smoke", "--seeds", "0",
               "--notebooks", "03_meld_sentiment", "--results", str(results), "--checkpoints", str(checkpoints)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    run_folder = checkpoints / "03_meld_sentiment" / "seed-0"
    deadline = time.monotonic() + 300
    # Kill once the first runs have checkpoints, in the middle of the learning-rate search.
    while time.monotonic() < deadline and len(list(run_folder.glob("*.pt"))) < 2:
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (results / "03_meld_sentiment" / "seed-0" / "table3_f1.csv").exists()

    resumed = reproduce(results, checkpoints, "--seeds", "0", "--notebooks", "03_meld_sentiment")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("table3_f1.csv", "table6_conductance.csv", "history.csv"):
        expected = (root / "results" / "03_meld_sentiment" / "seed-0" / name).read_text()
        assert (results / "03_meld_sentiment" / "seed-0" / name).read_text() == expected, name


def test_absent_data_is_skipped_with_reason(tmp_path, capsys):
    reproduction = Reproduction("paper", tmp_path / "results", tmp_path / "checkpoints", {},
                                selected=["03_meld_sentiment", "04_mmimdb_genre"])
    reproduction.run_tasks()
    reasons = {o.notebook: (o.status, o.reason) for o in reproduction.outcomes}
    assert reasons["03_meld_sentiment"][0] == "absent"
    assert "data/meld not found; pass --meld-root PATH" in reasons["03_meld_sentiment"][1]
    assert "pass --mmimdb-hdf5 PATH" in reasons["04_mmimdb_genre"][1]
    printed = capsys.readouterr().out
    assert "[03_meld_sentiment] skipped: " in printed


def test_profile_without_task_file_is_skipped(tmp_path):
    reproduction = Reproduction("default", tmp_path / "results", tmp_path / "checkpoints", {},
                                selected=["02_muse_stress"])
    reproduction.run_tasks()
    assert reproduction.outcomes[0].reason == "profile 'default' has no 02_muse_stress.yaml"


def test_given_release_path_must_exist(tmp_path):
    reproduction = Reproduction("smoke", tmp_path / "results", tmp_path / "checkpoints",
                                {"meld_root": str(tmp_path / "nowhere")}, selected=["03_meld_sentiment"])
    assert reproduction.run() == 1
    assert reproduction.outcomes[0].status == "failed"
    assert "nowhere not found; pass --meld-root PATH" in reproduction.outcomes[0].reason


def test_unknown_notebook_name_raises(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown notebook \['03_meld'\]: choose from"):
        Reproduction("smoke", tmp_path / "results", tmp_path / "checkpoints", {}, selected=["03_meld"])


def test_unknown_profile_lists_profiles(tmp_path):
    with pytest.raises(SystemExit, match=r"profile 'nope' not found .*'smoke'"):
        Reproduction("nope", tmp_path / "results", tmp_path / "checkpoints", {})


@pytest.mark.parametrize("text, message", [
    ("seeds: [0, true]\n", "seeds must be a non-empty list of integers >= 0"),
    ("seeds: [0\n", "is not valid YAML"),
    ("- 0\n", "expected a mapping"),
])
def test_bad_reproduce_yaml_names_file(tmp_path, monkeypatch, text, message):
    import mslr_utils.reproduce as reproduce

    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "reproduce.yaml").write_text(text)
    monkeypatch.setattr(reproduce, "PROFILE_DIR", tmp_path)
    with pytest.raises(SystemExit, match=f"reproduce.yaml.*{message}|{message}"):
        reproduce.load_settings("custom")
