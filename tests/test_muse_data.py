import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA
from mslr_utils.data.muse import (
    MuSELayout,
    extract_egemaps,
    scan_release,
    split_utterances,
    write_miniature,
)

LAYOUT = MuSELayout()
FSDD = SHARED_DATA / "fsdd"
requires_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason="real speech recordings ../shared/data/fsdd absent")


@pytest.fixture
def release(tmp_path):
    return write_miniature(tmp_path / "muse", speakers=4, per_speaker=6)


def test_miniature_scans_with_speakers(release):
    table, report = scan_release(release)
    assert report.matched == 24
    assert report.skipped == {}
    assert table["speaker"].nunique() == 4
    assert (table["speaker"] == table["id"].str[:2]).all()
    assert table["label"].sum() == 12


def test_wav_without_transcript_lists_id(release):
    (release / LAYOUT.transcripts_dir / "A0_001.txt").unlink()
    with pytest.raises(ValueError, match="wav without transcript: A0_001"):
        scan_release(release)
    table, report = scan_release(release, on_missing="skip")
    assert report.matched == 23
    assert report.skipped["wav without transcript"] == ["A0_001"]
    assert "A0_001" not in set(table["id"])
    assert report.summary().loc[0, "count"] >= 1


def test_transcript_without_wav_lists_id(release):
    (release / LAYOUT.audio_dirs[1] / "B1_002.wav").unlink()
    with pytest.raises(ValueError, match="transcript without wav: B1_002"):
        scan_release(release)


def test_invalid_type_lists_ids(release):
    path = release / LAYOUT.labels_csv
    labels = pd.read_csv(path)
    labels.loc[3, "Type"] = "maybe"
    labels.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"'Type' must be S or NS; invalid for A0_003='maybe'"):
        scan_release(release)


def test_duplicate_ids_are_listed(release):
    path = release / LAYOUT.labels_csv
    labels = pd.read_csv(path)
    pd.concat([labels, labels.iloc[[5]]]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate Sentence_name for ids A0_005"):
        scan_release(release)


def test_unreadable_wav_lists_id(release, tmp_path):
    table, _ = scan_release(release)
    broken = dict(zip(table["id"], table["wav"]))
    with open(broken["C2_000"], "wb") as handle:
        handle.write(b"not a wav file")
    with pytest.raises(ValueError, match="cannot read wav files for ids C2_000"):
        extract_egemaps(broken, tmp_path / "cache.parquet")


def test_missing_labels_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels_csv"):
        scan_release(tmp_path)


@pytest.mark.parametrize("mode", ["speaker", "random"])
def test_split_proportions_and_disjointness(release, mode):
    table, _ = scan_release(release)
    parts = split_utterances(table, mode=mode, sizes=(12, 6, 6), seed=1)
    ids = [set(parts[name]) for name in ("train", "val", "test")]
    assert sum(len(s) for s in ids) == len(table)
    assert not ids[0] & ids[1]
    assert not ids[0] & ids[2]
    assert not ids[1] & ids[2]
    if mode == "speaker":
        speakers = [set(table.loc[table["id"].isin(s), "speaker"]) for s in ids]
        assert not (speakers[0] & speakers[1])
        assert not (speakers[0] & speakers[2])
    assert parts == split_utterances(table, mode=mode, sizes=(12, 6, 6), seed=1)


def test_unknown_split_mode_raises(release):
    table, _ = scan_release(release)
    with pytest.raises(ValueError, match="'speaker' or 'random'"):
        split_utterances(table, mode="session")


@requires_fsdd
def test_egemaps_on_real_speech_and_cache(tmp_path):
    wavs = {p.stem: p for p in sorted(FSDD.glob("*.wav"))[:12]}
    cache = tmp_path / "egemaps.parquet"
    first = extract_egemaps(wavs, cache)
    assert first.shape == (12, 88)
    assert np.isfinite(first.to_numpy()).all()
    modified = cache.stat().st_mtime_ns
    second = extract_egemaps(wavs, cache)
    assert cache.stat().st_mtime_ns == modified, "a full cache hit rewrites nothing"
    assert np.array_equal(first.to_numpy(), second.to_numpy())


@requires_fsdd
def test_egemaps_cache_follows_changed_audio(tmp_path):
    sources = sorted(FSDD.glob("*.wav"))[:2]
    copy = tmp_path / "utterance.wav"
    shutil.copy(sources[0], copy)
    cache = tmp_path / "egemaps.parquet"
    before = extract_egemaps({"u": copy}, cache)
    shutil.copy(sources[1], copy)
    after = extract_egemaps({"u": copy}, cache)
    assert not np.array_equal(before.to_numpy(), after.to_numpy())
    assert np.array_equal(after.to_numpy(), extract_egemaps({"u": sources[1]}).to_numpy())
