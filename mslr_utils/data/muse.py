"""MuSE stress detection (Jaiswal et al., LREC 2020): scan the release and build features.

The release is access-restricted, so this module follows its published layout, and every
folder and file name is a parameter (``MuSELayout``):

- labels: a crowdsourcing CSV, one row per utterance, with ``Sentence_name``
  (``<utterance id>.wav``) and ``Type`` (``S`` stressed, ``NS`` not stressed);
- transcripts: ``<transcripts_dir>/<utterance id>.txt``;
- audio: ``<utterance id>.wav`` anywhere under the stressed and not-stressed monologue
  audio folders.

The speaker is the first two characters of the utterance id. Audio features are the 88
openSMILE eGeMAPSv02 functionals per utterance, cached by utterance id together with the
SHA-256 of the wav file and the feature set, so the cache is rebuilt for changed audio.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mslr_utils.data.splits import stratified_split_indices
from mslr_utils.io import atomic_write
from mslr_utils.utils import short_list

CLASS_NAMES = ("not stressed", "stressed")
TYPE_LABELS = {"NS": 0, "S": 1}
FEATURE_SET = "eGeMAPSv02"
NUM_FEATURES = 88
# Split sizes reported by Yao & Mihalcea (2022); how they split is not stated.
PAPER_SPLIT_SIZES = (1853, 200, 273)
ON_MISSING = ("error", "skip")


@dataclass(frozen=True)
class MuSELayout:
    """Paths inside the release folder.

    NOTE: the defaults follow the layout as described for the release, not a copy of it;
    set each path to the names in your copy.
    """

    labels_csv: str = "Survey Information/crowdsourcing_annotations.csv"
    transcripts_dir: str = "Combined/Utterance Transcripts"
    audio_dirs: tuple[str, ...] = ("Stressed Monologue Audio", "Not Stressed Monologue Audio")


@dataclass
class ScanReport:
    """Utterances kept, and the ids skipped for each reason (empty unless ``on_missing="skip"``)."""

    matched: int
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        rows = [{"reason": reason, "count": len(ids), "ids": ", ".join(ids[:10])} for reason, ids in self.skipped.items()]
        return pd.DataFrame(rows, columns=["reason", "count", "ids"])


def _listing(ids: Sequence[str], limit: int = 20) -> str:
    return short_list(sorted(ids), limit)


def _index_files(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    duplicates = []
    for path in sorted(folder.rglob(f"*{suffix}")):
        if path.stem in files:
            duplicates.append(path.stem)
        files[path.stem] = path
    if duplicates:
        raise ValueError(f"{folder}: {what} ids found twice: {_listing(duplicates)}; keep one file per utterance")
    return files


def scan_release(root: str | Path, layout: MuSELayout = MuSELayout(), on_missing: str = "error"):
    """Match labels, transcripts and wav files by utterance id.

    Returns ``(table, report)``: one row per utterance with ``id``, ``speaker``, ``label``,
    ``transcript`` and ``wav``. A ``Type`` other than S/NS or a duplicate id always
    raises, listing the ids. An utterance that lacks a transcript or a wav, or a file
    with no label, raises with ``on_missing="error"``. With ``"skip"`` it is dropped and
    listed in the report.
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    root = Path(root)
    labels_path = root / layout.labels_csv
    if not labels_path.is_file():
        raise FileNotFoundError(f"MuSE labels not found at {labels_path}: set the release folder and labels_csv")
    labels = pd.read_csv(labels_path, dtype=str)
    missing_columns = [c for c in ("Sentence_name", "Type") if c not in labels.columns]
    if missing_columns:
        raise ValueError(f"{labels_path}: missing columns {missing_columns}; expected the crowdsourcing CSV")
    labels["id"] = labels["Sentence_name"].str.strip().str.removesuffix(".wav")
    labels["Type"] = labels["Type"].str.strip()
    duplicated = labels.loc[labels["id"].duplicated(keep=False), "id"].unique().tolist()
    if duplicated:
        raise ValueError(f"{labels_path}: duplicate Sentence_name for ids {_listing(duplicated)}")
    invalid = labels.loc[~labels["Type"].isin(TYPE_LABELS)]
    if not invalid.empty:
        pairs = [f"{i}={t!r}" for i, t in zip(invalid["id"], invalid["Type"])]
        raise ValueError(f"{labels_path}: field 'Type' must be S or NS; invalid for {_listing(pairs)}")

    transcripts = _index_files(root / layout.transcripts_dir, ".txt", "transcript")
    wavs: dict[str, Path] = {}
    for folder in layout.audio_dirs:
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"MuSE audio folder not found at {root / folder}: set audio_dirs")
        found = _index_files(root / folder, ".wav", "wav")
        clash = sorted(set(found) & set(wavs))
        if clash:
            raise ValueError(f"wav ids found in two audio folders: {_listing(clash)}")
        wavs.update(found)

    labelled = set(labels["id"])
    problems = {
        "label without wav": sorted(labelled - set(wavs)),
        "label without transcript": sorted(labelled - set(transcripts)),
        "wav without label": sorted(set(wavs) - labelled),
        "transcript without label": sorted(set(transcripts) - labelled),
        "wav without transcript": sorted(set(wavs) - set(transcripts)),
        "transcript without wav": sorted(set(transcripts) - set(wavs)),
    }
    problems = {reason: ids for reason, ids in problems.items() if ids}
    if problems and on_missing == "error":
        details = "; ".join(f"{reason}: {_listing(ids)}" for reason, ids in problems.items())
        raise ValueError(f"{root}: unmatched utterances ({details}); fix the release or use on_missing='skip'")

    keep = labels[labels["id"].isin(set(wavs) & set(transcripts))].sort_values("id")
    table = pd.DataFrame(
        {
            "id": keep["id"].tolist(),
            "speaker": [i[:2] for i in keep["id"]],
            "label": [TYPE_LABELS[t] for t in keep["Type"]],
            "transcript": [transcripts[i].read_text(encoding="utf-8", errors="replace").strip() for i in keep["id"]],
            "wav": [str(wavs[i]) for i in keep["id"]],
        }
    )
    return table, ScanReport(matched=len(table), skipped=problems)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def extract_egemaps(wavs: Mapping[str, str | Path], cache_path: str | Path | None = None) -> pd.DataFrame:
    """Return the 88 eGeMAPSv02 functionals per utterance id (rows in the order of ``wavs``).

    With ``cache_path`` (a parquet file), an id whose wav has the cached SHA-256 and
    feature set is read from the cache. Other ids are extracted, and then the cache is
    rewritten atomically. Unreadable wav files raise, listing their ids.
    """
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals)
    records: dict[str, dict] = {}
    if cache_path is not None and Path(cache_path).exists():
        records = pd.read_parquet(cache_path).set_index("id").to_dict(orient="index")
    unreadable, extracted = [], 0
    for utterance, path in wavs.items():
        digest = _sha256(path)
        record = records.get(utterance)
        if record is not None and record["sha256"] == digest and record["feature_set"] == FEATURE_SET:
            continue
        try:
            values = smile.process_file(str(path)).iloc[0]
        except Exception:  # openSMILE and its audio reader raise several error types
            unreadable.append(utterance)
            continue
        records[utterance] = {"sha256": digest, "feature_set": FEATURE_SET, **values.to_dict()}
        extracted += 1
    if unreadable:
        raise ValueError(f"cannot read wav files for ids {_listing(unreadable)}; replace or remove them")
    table = pd.DataFrame.from_dict(records, orient="index").rename_axis("id")
    if cache_path is not None and extracted:
        atomic_write(cache_path, lambda tmp: table.reset_index().to_parquet(tmp, index=False))
    features = table.loc[list(wavs)].drop(columns=["sha256", "feature_set"]).astype(np.float64)
    if features.shape[1] != NUM_FEATURES:
        raise RuntimeError(f"openSMILE returned {features.shape[1]} eGeMAPS values per file, expected {NUM_FEATURES}")
    return features


def split_utterances(
    table: pd.DataFrame, mode: str = "speaker", sizes: Sequence[int] = PAPER_SPLIT_SIZES, seed: int = 0
) -> dict[str, list[str]]:
    """Split utterance ids into train, validation and test in the proportions of ``sizes``.

    ``"speaker"`` keeps every speaker in one split: speakers are shuffled with ``seed`` and
    assigned to test, then validation, until each contains its share of utterances. The
    remaining speakers go to train. ``"random"`` is a stratified split by label.
    """
    fractions = np.asarray(sizes, dtype=float) / float(sum(sizes))
    if mode == "random":
        parts = stratified_split_indices(table["label"].to_numpy(), fractions.tolist(), seed)
        return {name: table["id"].iloc[part].tolist() for name, part in zip(("train", "val", "test"), parts)}
    if mode != "speaker":
        raise ValueError(f"split mode must be 'speaker' or 'random', got {mode!r}")
    counts = table.groupby("speaker").size()
    speakers = list(counts.index)
    np.random.default_rng(seed).shuffle(speakers)
    targets = {"test": fractions[2] * len(table), "val": fractions[1] * len(table)}
    assigned: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    totals = {"train": 0, "val": 0, "test": 0}
    for speaker in speakers:
        name = next((n for n in ("test", "val") if totals[n] < targets[n]), "train")
        assigned[name].append(speaker)
        totals[name] += int(counts[speaker])
    return {name: table.loc[table["speaker"].isin(group), "id"].tolist() for name, group in assigned.items()}


def write_miniature(
    root: str | Path,
    layout: MuSELayout = MuSELayout(),
    speakers: int = 4,
    per_speaker: int = 6,
    seed: int = 0,
    sample_rate: int = 16000,
) -> Path:
    """Write a small synthetic release in ``layout``: labels CSV, transcripts and wav files.

    Half of each speaker's utterances are stressed. Those are louder, higher-pitched tones
    with noise, and their transcripts use stress words, so both modalities carry signal. This is test data, not MuSE.
    """
    import wave

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    (root / layout.transcripts_dir).mkdir(parents=True, exist_ok=True)
    calm = ["I walked to the park and read a book", "We had a quiet dinner with friends", "The weather was mild today"]
    tense = ["I am worried about the exam deadline", "Everything went wrong and I panicked", "I could not sleep before it"]
    for s in range(speakers):
        for u in range(per_speaker):
            utterance = f"{chr(65 + s)}{s}_{u:03d}"
            stressed = u % 2 == 1
            folder = root / layout.audio_dirs[0 if stressed else 1]
            folder.mkdir(parents=True, exist_ok=True)
            seconds = 0.6 + 0.2 * rng.random()
            t = np.arange(int(sample_rate * seconds)) / sample_rate
            pitch = (220.0 if stressed else 140.0) + 20.0 * s + 10.0 * rng.standard_normal()
            amplitude = 0.5 if stressed else 0.25
            signal = amplitude * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(len(t))
            pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
            with wave.open(str(folder / f"{utterance}.wav"), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(sample_rate)
                handle.writeframes(pcm.tobytes())
            sentences = tense if stressed else calm
            (root / layout.transcripts_dir / f"{utterance}.txt").write_text(
                sentences[int(rng.integers(len(sentences)))] + ".", encoding="utf-8"
            )
            rows.append({"Sentence_name": f"{utterance}.wav", "Type": "S" if stressed else "NS",
                         "Duration": round(seconds, 3), "Gender": "F" if s % 2 else "M",
                         "Question_type": "monologue", "Activation": round(float(rng.uniform(1, 9)), 2),
                         "Valence": round(float(rng.uniform(1, 9)), 2)})
    labels_path = root / layout.labels_csv
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(labels_path, index=False)
    return root


@dataclass
class MuSETask:
    """The split stress task: tokenised transcripts, standardised eGeMAPS features, labels."""

    splits: dict
    class_names: tuple[str, ...]
    sizes: pd.DataFrame
    report: ScanReport
    split_mode: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_muse_task(
    root: str | Path,
    tokenize,
    layout: MuSELayout = MuSELayout(),
    split_mode: str = "speaker",
    split_sizes: Sequence[int] = PAPER_SPLIT_SIZES,
    seed: int = 0,
    cache_path: str | Path | None = None,
    on_missing: str = "error",
):
    """Scan the release, extract (or read cached) audio features and split by ``split_mode``.

    ``tokenize(texts)`` returns ``input_ids`` and ``attention_mask``. The audio features
    are standardised with the training split's mean and standard deviation.
    """
    import torch
    from sklearn.preprocessing import StandardScaler

    from mslr_utils.data.splits import ModalSplit

    table, report = scan_release(root, layout, on_missing)
    if table.empty:
        raise ValueError(f"{root}: no utterance has a label, a transcript and a wav file")
    features = extract_egemaps(dict(zip(table["id"], table["wav"])), cache_path)
    parts = split_utterances(table, split_mode, split_sizes, seed)
    by_id = table.set_index("id")
    scaler = StandardScaler().fit(features.loc[parts["train"]].to_numpy())
    splits, size_rows = {}, []
    for name in ("train", "val", "test"):
        ids = parts[name]
        if not ids:
            raise ValueError(f"{root}: the {split_mode} split left no utterance in '{name}'; use more speakers")
        tokens = tokenize(by_id.loc[ids, "transcript"].tolist())
        audio = torch.as_tensor(scaler.transform(features.loc[ids].to_numpy()), dtype=torch.float32)
        labels = torch.tensor(by_id.loc[ids, "label"].to_numpy(dtype=np.int64))
        splits[name] = ModalSplit(
            name,
            {"text": {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]},
             "audio": {"features": audio}},
            labels,
            ids=list(ids),
        )
        size_rows.append({"split": name, "rows": len(ids), "speakers": by_id.loc[ids, "speaker"].nunique(),
                          "stressed": int(labels.sum()), "not stressed": int((labels == 0).sum())})
    return MuSETask(splits, CLASS_NAMES, pd.DataFrame(size_rows).set_index("split"), report, split_mode)
