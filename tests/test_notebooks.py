"""Committed notebooks are clean, and headless papermill runs work end to end."""

import json
import re
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from conftest import REPO_ROOT
from mslr_utils.runner import notebooks

NOTEBOOKS = notebooks()
ABSOLUTE_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\)")


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_clean(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    assert not ABSOLUTE_PATH.search(text), "machine path in notebook"
    assert "widgets" not in nb.metadata
    assert "papermill" not in nb.metadata
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in code_cells(nb):
        assert "execution" not in cell.metadata
        assert "papermill" not in cell.metadata
        for output in cell.get("outputs", []):
            assert output.get("name") != "stderr", f"stderr output in cell {cell.source[:60]!r}"
            assert output.output_type != "error"
    assert all(c.execution_count for c in code_cells(nb)), "notebook is not executed: run `python -m mslr_utils.runner refresh`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_commented_literals(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in code_cells(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():
        assert re.match(r"^\w+: [\w\[\]]+ = [^#]+  # \S", line), f"parameter without type or comment: {line!r}"


def run_smoke(tmp_path, *overrides, notebook="01_reviews_mslr"):
    """Run one notebook with the smoke profile, writing everything under ``tmp_path``."""
    output = tmp_path / "figures"
    command = [
        sys.executable, "-m", "mslr_utils.runner", "run", "--profile", "smoke", "--notebooks", notebook,
        "--output-dir", str(tmp_path / "executed"), "-p", f"output_dir={output}",
        "-p", f"checkpoint_dir={tmp_path / 'checkpoints'}", *(arg for o in overrides for arg in ("-p", o)),
    ]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    return completed, output


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory, smoke_reproduction):
    # Seed 0 of the smoke reproduction is notebook 01 with the smoke profile as it is
    # (data_seed 0 equals seed 0), so it serves as the plain run.
    root, completed = smoke_reproduction
    plain = (completed, root / "results" / "01_reviews_mslr" / "seed-0")
    changed = run_smoke(tmp_path_factory.mktemp("changed"), "max_train=90", "seed=1")
    return plain, changed


def test_smoke_profile_writes_every_output(smoke_runs):
    (completed, output), _ = smoke_runs
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = {"metrics.csv", "conductance.csv", "conductance_per_epoch.png", "conductance_per_epoch.csv",
                "overlap.csv", "history.csv", "lr_search.csv", "run_summary.json"}
    assert expected <= {p.name for p in output.iterdir()}
    metrics = pd.read_csv(output / "metrics.csv", index_col="model")
    assert list(metrics.index) == ["Text-only", "Tabular-only", "Joint-global", "MSES", "Keep", "Smooth", "Dynamic"]
    assert metrics["f1_macro"].between(0, 1).all()


def test_command_line_parameter_changes_result(smoke_runs):
    (plain, plain_output), (changed, changed_output) = smoke_runs
    assert changed.returncode == 0, changed.stderr[-3000:]
    plain_summary = json.loads((plain_output / "run_summary.json").read_text())
    changed_summary = json.loads((changed_output / "run_summary.json").read_text())
    assert plain_summary["sizes"]["train"]["rows"] == 120
    assert changed_summary["sizes"]["train"]["rows"] == 90
    plain_metrics = pd.read_csv(plain_output / "metrics.csv", index_col="model")
    changed_metrics = pd.read_csv(changed_output / "metrics.csv", index_col="model")
    assert not plain_metrics.equals(changed_metrics)


def test_ray_backend_smoke_run(smoke_runs, tmp_path):
    (_, plain_output), _ = smoke_runs
    completed, output = run_smoke(tmp_path, "sweep_backend=ray")
    assert completed.returncode == 0, completed.stderr[-3000:]
    ray_search = pd.read_csv(output / "lr_search.csv")
    plain_search = pd.read_csv(plain_output / "lr_search.csv")
    assert ray_search[["model", "lr"]].equals(plain_search[["model", "lr"]])
    assert ray_search["selected"].all()
    assert len(list((tmp_path / "checkpoints" / "sweep").glob("*.json"))) == 3, "one record per finished trial"
    assert (tmp_path / "checkpoints" / "ray").is_dir(), "Tune's records go beside the checkpoints"
    metrics = pd.read_csv(output / "metrics.csv", index_col="model")
    assert len(metrics) == 7


def test_failed_cell_is_named(tmp_path):
    completed, _ = run_smoke(tmp_path, "early_epoch=5")
    assert completed.returncode == 1
    assert "FAILED 01_reviews_mslr.ipynb: cell" in completed.stderr
    assert "parameter early_epoch=5 is invalid" in completed.stderr


def test_unknown_profile_is_reported():
    completed = subprocess.run(
        [sys.executable, "-m", "mslr_utils.runner", "run", "--profile", "nightly"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert completed.returncode != 0
    assert "profile folder notebooks/profiles/nightly not found" in completed.stderr
    assert "smoke" in completed.stderr


def seed_zero(smoke_reproduction, notebook):
    root, _ = smoke_reproduction
    return root / "results" / notebook / "seed-0"


def test_mmimdb_smoke_run_writes_tables(smoke_reproduction):
    output = seed_zero(smoke_reproduction, "04_mmimdb_genre")
    table4 = pd.read_csv(output / "table4_f1.csv", index_col="model")
    assert list(table4.columns) == ["epoch", "f1_micro", "f1_macro", "f1_weighted", "f1_samples"]
    assert len(table4) == 7
    table7 = pd.read_csv(output / "table7_conductance.csv")
    assert list(table7["model"]) == ["Text-only", "Visual-only", "Joint-global", "Keep", "Keep"]
    assert (output / "conductance_per_epoch.png").stat().st_size > 0


def test_muse_smoke_run_writes_tables(smoke_reproduction):
    output = seed_zero(smoke_reproduction, "02_muse_stress")
    table2 = pd.read_csv(output / "table2_metrics.csv", index_col="model")
    assert list(table2.columns) == ["epoch", "accuracy", "precision_stressed", "recall_stressed", "f1_stressed"]
    assert len(table2) == 7
    table1 = pd.read_csv(output / "table1_overlap.csv")
    assert list(table1.columns) == ["model_a", "model_b", "overlap", "1-1", "0-0", "1-0", "0-1"]
    assert (table1[["1-1", "0-0", "1-0", "0-1"]].sum(axis=1) == 8).all()  # one test speaker, 8 utterances
    table5 = pd.read_csv(output / "table5_conductance.csv")
    assert list(table5["model"]) == ["Text-only", "Audio-only", "Joint-global", "Keep", "Keep"]
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["split_mode"] == "speaker"


def test_meld_smoke_run_writes_tables(smoke_reproduction):
    output = seed_zero(smoke_reproduction, "03_meld_sentiment")
    table3 = pd.read_csv(output / "table3_f1.csv", index_col="model")
    assert list(table3.columns) == ["epoch", "f1_neutral", "f1_positive", "f1_negative", "f1_weighted"]
    assert list(table3.index) == ["Text-only", "Audio-only", "Joint-global", "MSES", "Keep", "Smooth", "Dynamic"]
    assert table3.drop(columns="epoch").stack().between(0, 100).all()
    table6 = pd.read_csv(output / "table6_conductance.csv")
    assert list(table6["model"]) == ["Text-only", "Audio-only", "Joint-global", "Keep", "Keep"]
    assert list(table6["epoch"]) == [2, 2, 2, 1, 2]
    dropped = pd.read_csv(output / "dropped_utterances.csv")
    assert dropped[["split", "Dialogue_ID", "Utterance_ID"]].values.tolist() == [["dev", 1, 1]]
    assert (output / "conductance_per_epoch.png").stat().st_size > 0
    summary = json.loads((output / "run_summary.json").read_text())
    assert summary["word_vectors"] == "release"
    assert summary["match"]["dev"]["dropped"] == 1


def test_meld_paper_profile_sets_paper_rates():
    import yaml

    profile = yaml.safe_load((REPO_ROOT / "notebooks/profiles/paper/03_meld_sentiment.yaml").read_text())
    assert profile["batch_size"] == 10
    assert (profile["text_lr_grid"], profile["audio_lr_grid"], profile["global_lr_grid"]) == ([1e-4], [1e-3], [5e-4])
    assert profile["smooth_lrs"] == {"text": 2.5e-4, "audio": 7.5e-4}
