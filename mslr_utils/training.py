"""Training loop for every strategy, with per-epoch records and resumable checkpoints.

The trainer receives only the training and validation splits: the Dynamic signal, MSES,
early-stopping state and the choice of the best epoch all use validation scores. The
test split is scored afterwards, once, by ``predict`` in the caller's final section.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from mslr_utils.data.splits import ModalSplit
from mslr_utils.io import save_torch
from mslr_utils.metrics import (
    MULTICLASS_SCORES,
    MULTILABEL_SCORES,
    check_score_name,
    classification_scores,
    multilabel_scores,
)
from mslr_utils.models import LateFusionClassifier
from mslr_utils.mses import ModalityEarlyStopping
from mslr_utils.optim import build_param_groups, check_strategy, make_optimizer
from mslr_utils.schedulers import DynamicLR
from mslr_utils.utils import code_fingerprint, fingerprint

log = logging.getLogger(__name__)

EpochCallback = Callable[[LateFusionClassifier, int], Mapping[str, float]]


@dataclass
class TrainSettings:
    """Settings shared by every run of a comparison."""

    epochs: int = 5
    batch_size: int = 32
    eval_batch_size: int = 256
    weight_decay: float = 0.01
    selection_metric: str = "f1_macro"  # fused validation score that picks the best epoch
    dynamic_metric: str = "f1_macro"  # unimodal validation score behind Dynamic and MSES
    dynamic_window: int = 5
    mses_patience: int = 3
    snapshot_epochs: tuple[int, ...] = ()  # epochs whose weights are kept for later scoring
    class_weights: tuple[float, ...] | None = None  # cross-entropy weight per class; None = unweighted
    multilabel: bool = False  # labels are 0/1 rows; binary cross-entropy on every logit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        check_score_name(self.selection_metric, self.multilabel)
        check_score_name(self.dynamic_metric, self.multilabel)
        if self.multilabel and self.class_weights is not None:
            raise ValueError("class_weights apply to single-label tasks; leave them None for a multi-label task")
        self.snapshot_epochs = tuple(int(e) for e in self.snapshot_epochs)
        if self.class_weights is not None:
            self.class_weights = tuple(float(w) for w in self.class_weights)
            if not all(math.isfinite(w) and w > 0 for w in self.class_weights):
                raise ValueError(f"class_weights must be finite and positive, got {self.class_weights}")


@dataclass
class RunSpec:
    """One training run: a name for tables, a strategy and its learning rate(s)."""

    name: str
    strategy: str
    lrs: float | dict[str, float]

    def __post_init__(self) -> None:
        check_strategy(self.strategy)


@dataclass
class RunResult:
    """Outcome of a finished run: its history and the best, final and snapshot weights."""

    name: str
    strategy: str
    history: pd.DataFrame
    best_epoch: int
    best_state: dict[str, torch.Tensor]
    final_state: dict[str, torch.Tensor]
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    group_report: pd.DataFrame | None = None
    seconds: float = 0.0
    modalities: list[str] = field(default_factory=list)

    def state_at(self, which: str | int) -> dict[str, torch.Tensor]:
        """Return the weights for ``"best"``, ``"final"`` or a snapshot epoch number."""
        if which == "best":
            return self.best_state
        if which == "final":
            return self.final_state
        if which in self.snapshots:
            return self.snapshots[which]
        raise KeyError(f"run {self.name!r} has no weights for {which!r}: snapshots at {sorted(self.snapshots)}")


def slug(name: str) -> str:
    """Turn a run name such as ``Text-only@2e-05`` into a file-name-safe string."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def trainable_state(model: torch.nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


def load_trainable_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    unknown = [n for n in state if n not in params]
    if unknown:
        raise KeyError(f"state has parameters the model lacks: {unknown[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def predict(model: LateFusionClassifier, split: ModalSplit, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Return fused and per-modality logits for a split (eval mode, no autograd)."""
    was_training = model.training
    model.eval()
    fused, per_modality = [], {m: [] for m in model.modalities}
    with torch.no_grad():
        for inputs, _ in split.batches(batch_size):
            output = model(inputs)
            fused.append(output.logits.cpu())
            for m in model.modalities:
                per_modality[m].append(output.modality_logits[m].cpu())
    model.train(was_training)
    return {"fused": torch.cat(fused), **{m: torch.cat(v) for m, v in per_modality.items()}}


def valid_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten sequence outputs to one row per real position.

    A sequence task (dialogues of utterances) has logits (sequences, positions, classes)
    and labels (sequences, positions), with -1 at padded positions. Those positions are
    dropped, so the loss and every metric see only real utterances. Other tasks pass
    through unchanged.
    """
    if logits.dim() == 3 and labels.dim() == 2:
        keep = labels.reshape(-1) >= 0
        return logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep]
    return logits, labels


def true_labels(split: ModalSplit, multilabel: bool = False) -> np.ndarray:
    """Return a split's labels in the order of the fused predictions (real positions only for sequences)."""
    labels = split.labels.cpu()
    if not multilabel and labels.dim() == 2:
        return labels[labels >= 0].numpy()
    return labels.numpy()


def predicted_labels(logits: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """Return class indices (argmax), or 0/1 rows (sigmoid above 0.5, that is logit above 0)."""
    return (logits > 0).long() if multilabel else logits.argmax(1)


def score_logits(
    logits: dict[str, torch.Tensor], labels: torch.Tensor, class_names, multilabel: bool = False
) -> dict[str, dict[str, float]]:
    """Score each entry of ``logits`` (fused and per modality) against ``labels``."""
    score = multilabel_scores if multilabel else classification_scores
    scores = {}
    for name, values in logits.items():
        values, y = valid_positions(values.cpu(), labels.cpu())
        scores[name] = score(y.numpy(), predicted_labels(values, multilabel).numpy(), class_names)
    return scores


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    logits, labels = valid_positions(logits, labels)
    return F.cross_entropy(logits, labels, weight=weight)


def _grad_norm(params: Sequence[torch.nn.Parameter]) -> float:
    total = 0.0
    for p in params:
        if p.grad is not None:
            total += float(p.grad.detach().pow(2).sum())
    return math.sqrt(total)


class Trainer:
    """Train one late-fusion model with one strategy, recording every epoch.

    Each epoch trains on ``train``, then scores the fused model and each modality alone
    on ``val``. The history row holds, per modality, the rate used in the epoch, the
    unimodal training loss, the mean gradient norm and the validation score, plus any
    values the ``epoch_callback`` returns (for example conductance). A checkpoint is
    written atomically after each epoch to ``checkpoint_dir/<name>-<fingerprint>.pt``,
    where the fingerprint hashes the configuration. A new Trainer with the same
    configuration and folder resumes from it, and a finished run loads without training.
    """

    def __init__(
        self,
        model: LateFusionClassifier,
        spec: RunSpec,
        settings: TrainSettings,
        class_names: Sequence[str],
        checkpoint_dir: str | Path | None = None,
        epoch_callback: EpochCallback | None = None,
        config_extra: Mapping | None = None,
    ):
        self.model = model
        self.spec = spec
        self.settings = settings
        self.class_names = tuple(class_names)
        self.epoch_callback = epoch_callback

        if spec.strategy == "unimodal" and len(model.modalities) != 1:
            raise ValueError(f"run {spec.name!r}: strategy 'unimodal' needs a one-modality model, got {model.modalities}")
        if spec.strategy in ("keep", "smooth", "dynamic") and not isinstance(spec.lrs, Mapping):
            raise ValueError(f"run {spec.name!r}: strategy {spec.strategy!r} needs one rate per modality")

        groups, self.group_report = build_param_groups(model, spec.lrs, settings.weight_decay)
        self.param_names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.modality_params = {
            m: [p for _, p in params if p.requires_grad] for m, params in model.modality_parameters().items()
        }
        self.optimizer = make_optimizer(groups)
        self.scheduler = (
            DynamicLR(self.optimizer, model.modalities, window=settings.dynamic_window)
            if spec.strategy == "dynamic"
            else None
        )
        self.mses = ModalityEarlyStopping(model, settings.mses_patience) if spec.strategy == "mses" else None
        self.generator = torch.Generator().manual_seed(settings.seed)

        self.config = {
            "spec": asdict(spec),
            "settings": asdict(settings),
            "modalities": model.modalities,
            "parameters": int(self.group_report["parameters"].sum()),
            "code": code_fingerprint(),
            **(dict(config_extra) if config_extra else {}),
        }
        self.fingerprint = fingerprint(self.config)
        self.checkpoint_path = (
            Path(checkpoint_dir) / f"{slug(spec.name)}-{self.fingerprint}.pt" if checkpoint_dir else None
        )

        # Training state, saved in every checkpoint.
        self.history: list[dict] = []
        self.best_epoch = 0
        self.best_score = float("-inf")
        self.best_state: dict[str, torch.Tensor] = {}
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.finished = False
        self.seconds = 0.0

    # -- learning rates -------------------------------------------------------------
    def current_lrs(self) -> dict[str, float]:
        """Return the rate each modality trains with now (the global rate for one group)."""
        by_name = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        if "global" in by_name:
            return {m: by_name["global"] for m in self.model.modalities}
        return {m: by_name[m] for m in self.model.modalities}

    # -- checkpoints ----------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "config": self.config,
            "epoch": len(self.history),
            "model": trainable_state(self.model, self.param_names),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "mses": self.mses.state_dict() if self.mses else None,
            "history": self.history,
            "best": {"epoch": self.best_epoch, "score": self.best_score, "state": self.best_state},
            "snapshots": self.snapshots,
            "rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "finished": self.finished,
            "seconds": self.seconds,
        }

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is not None:
            save_torch(self.checkpoint_path, self._checkpoint())

    def try_resume(self) -> bool:
        """Load the checkpoint if it exists; returns True when training state was restored."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as error:  # torch raises several types for a truncated or foreign file
            raise ValueError(
                f"checkpoint {self.checkpoint_path} cannot be read ({type(error).__name__}: {error}); "
                "delete it to train this run from the start"
            ) from error

        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"checkpoint {self.checkpoint_path} was written for another configuration "
                f"({state.get('fingerprint')} != {self.fingerprint}): delete it or choose another checkpoint folder"
            )

        load_trainable_state(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.mses is not None:
            self.mses.load_state_dict(state["mses"])

        self.history = list(state["history"])
        self.best_epoch = state["best"]["epoch"]
        self.best_score = state["best"]["score"]
        self.best_state = state["best"]["state"]
        self.snapshots = dict(state["snapshots"])
        torch.set_rng_state(state["rng"])
        self.generator.set_state(state["generator"])
        self.finished = state["finished"]
        self.seconds = state.get("seconds", 0.0)

        if self.finished:
            log.info("run %s: loaded the finished run from %s", self.spec.name, self.checkpoint_path)
        else:
            log.info("run %s: resumed after epoch %d from %s", self.spec.name, len(self.history), self.checkpoint_path)
        return True

    # -- one epoch --------------------------------------------------------------------
    def _train_epoch(self, train: ModalSplit) -> dict[str, float]:
        model = self.model
        model.train()
        if self.mses is not None:
            self.mses.apply_modes()
        weight = None
        if self.settings.class_weights is not None:
            weight = torch.tensor(self.settings.class_weights, device=train.labels.device)
        losses, modality_losses = [], {m: [] for m in model.modalities}
        grad_norms = {m: [] for m in model.modalities}
        for inputs, labels in train.batches(self.settings.batch_size, shuffle=True, generator=self.generator):
            output = model(inputs)
            loss = compute_loss(output.logits, labels, weight, self.settings.multilabel)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for m in model.modalities:
                grad_norms[m].append(_grad_norm(self.modality_params[m]))
                unimodal_loss = compute_loss(output.modality_logits[m].detach(), labels, weight, self.settings.multilabel)
                modality_losses[m].append(float(unimodal_loss))
            self.optimizer.step()
            losses.append(float(loss.detach()))
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(
                f"run {self.spec.name!r}: training loss became non-finite; lower the learning rates {self.current_lrs()}"
            )
        row = {"train_loss": float(np.mean(losses))}
        for m in model.modalities:
            row[f"{m}_train_loss"] = float(np.mean(modality_losses[m]))
            row[f"{m}_grad_norm"] = float(np.mean(grad_norms[m]))
        return row

    def fit(self, train: ModalSplit, val: ModalSplit) -> RunResult:
        """Train for ``settings.epochs`` epochs (or resume) and return the run's result."""
        self.try_resume()
        settings = self.settings
        while not self.finished and len(self.history) < settings.epochs:
            epoch = len(self.history) + 1
            start = time.perf_counter()
            row = {"epoch": epoch}
            row.update({f"{m}_lr": lr for m, lr in self.current_lrs().items()})
            row.update(self._train_epoch(train))

            logits = predict(self.model, val, settings.eval_batch_size)
            scores = score_logits(logits, val.labels, self.class_names, settings.multilabel)
            for key in MULTILABEL_SCORES if settings.multilabel else MULTICLASS_SCORES:
                row[f"val_{key}"] = scores["fused"][key]
            unimodal = {m: scores[m][settings.dynamic_metric] for m in self.model.modalities}
            for m, value in unimodal.items():
                row[f"{m}_val_score"] = value

            if self.epoch_callback is not None:
                row.update(self.epoch_callback(self.model, epoch))

            if self.scheduler is not None:
                self.scheduler.step(unimodal)
            if self.mses is not None:
                for m in self.mses.step(unimodal, epoch):
                    log.info("run %s: MSES stopped modality %s after epoch %d", self.spec.name, m, epoch)
                for m in self.model.modalities:
                    row[f"{m}_stopped"] = m in self.mses.stopped
                if self.mses.all_stopped:
                    log.info("run %s: MSES stopped every modality; training ends after epoch %d", self.spec.name, epoch)
                    self.finished = True

            score = row[f"val_{settings.selection_metric}"]
            if score > self.best_score:
                self.best_score = score
                self.best_epoch = epoch
                self.best_state = trainable_state(self.model, self.param_names)
            if epoch in settings.snapshot_epochs:
                self.snapshots[epoch] = trainable_state(self.model, self.param_names)

            self.seconds += time.perf_counter() - start
            row["seconds"] = time.perf_counter() - start
            self.history.append(row)
            if epoch == settings.epochs:
                self.finished = True
            self.save_checkpoint()
            log.info("run %s: epoch %d val %s %.4f", self.spec.name, epoch, settings.selection_metric, score)
        self.finished = True
        # No seconds here: this line lands in committed notebook outputs, which carry no timings.
        log.info("run %s: done after %d epochs, best epoch %d with val %s %.4f",
                 self.spec.name, len(self.history), self.best_epoch, settings.selection_metric, self.best_score)
        return self.result()

    def result(self) -> RunResult:
        history = pd.DataFrame(self.history)
        history.insert(0, "model", self.spec.name)
        final_state = trainable_state(self.model, self.param_names)
        return RunResult(
            name=self.spec.name,
            strategy=self.spec.strategy,
            history=history,
            best_epoch=self.best_epoch,
            best_state=self.best_state,
            final_state=final_state,
            snapshots=dict(self.snapshots),
            group_report=self.group_report,
            seconds=self.seconds,
            modalities=list(self.model.modalities),
        )
