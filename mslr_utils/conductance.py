"""Layer conductance of each modality's top-level layer, through Captum.

Conductance (Dhamdhere et al., 2019) of a neuron is its share of the integrated
gradient of the target output along the straight path from a baseline input to the real
input. Yao & Mihalcea (2022) average it over the neurons of a modality's top-level layer
and over samples. A modality whose average collapses towards zero contributes little to
the fused prediction.

Choices made here:
- Target: the true class of each sample, so that every model is measured on the same
  outputs (the predicted class would differ between models). For a multi-label task the
  target is every label's logit, signed +1 where the label is true and -1 where it is
  absent, averaged over labels: positive conductance then pushes towards the true label
  set, as for a single label. Conductance is linear in the output, so this equals the
  signed per-label conductance averaged over labels, computed in one Captum call.
- Baselines: each encoder's own (``attribution_inputs``): zeros (the training mean) for
  standardised features, all-[PAD] word embeddings with [CLS] and [SEP] kept for text.
- Output: the fused logits. Because fusion is additive, the other modalities add a
  constant along the path; they are computed once per batch and passed as that constant.
- Attribution runs in eval mode (no dropout), so repeated calls give identical values.
- Sequence tasks (dialogues of utterances, labels -1 where padded): the target is each
  real utterance's true-class logit, averaged over the dialogue's real utterances, in one
  Captum call per batch of dialogues. An utterance's top-level neurons feed only its own
  logit, so a neuron's conductance for that average is its conductance for its own
  utterance's logit divided by the dialogue's utterance count. The result is scaled
  back by that count and padded positions are dropped, giving one row per utterance.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pandas as pd
import torch
from captum.attr import LayerConductance

from mslr_utils.data.splits import ModalSplit
from mslr_utils.models import LateFusionClassifier


@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's previous mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _fused_forward(model: LateFusionClassifier, modality: str, target_kind: str):
    encoder = model.encoders[modality]

    def forward(x: torch.Tensor, other_logits: torch.Tensor, targets: torch.Tensor, *extra: torch.Tensor):
        logits = model.modality_logits(modality, encoder.forward_from_attribution(x, *extra)) + other_logits
        if target_kind == "multilabel":
            # targets: +1 for a true label, -1 for an absent one.
            return (logits * targets).mean(1)
        if target_kind == "sequence":
            # targets: the class of each position, -1 where padded.
            real = targets >= 0
            chosen = logits.gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2)
            return (chosen * real).sum(1) / real.sum(1).clamp(min=1)
        return logits

    return forward


def _target_kind(labels: torch.Tensor, multilabel: bool) -> str:
    if multilabel:
        return "multilabel"
    return "sequence" if labels.dim() == 2 else "single"


def modality_conductance(
    model: LateFusionClassifier,
    split: ModalSplit,
    modality: str,
    n_steps: int = 20,
    batch_size: int = 16,
    method: str = "gausslegendre",
    multilabel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return per-sample, per-neuron conductance of ``modality``'s top-level layer.

    Returns ``(conductance, delta)``. Conductance has shape (samples, neurons), where a
    sample of a sequence task is a real utterance. Delta is Captum's convergence delta per
    sample (per dialogue for a sequence task): the sum over neurons minus the change of
    the target between baseline and input, which shrinks as ``n_steps`` grows.
    """
    if modality not in model.modalities:
        raise KeyError(f"model has no modality {modality!r}; it has {model.modalities}")
    encoder = model.encoders[modality]
    target_kind = _target_kind(split.labels, multilabel)
    layer_conductance = LayerConductance(_fused_forward(model, modality, target_kind), encoder.top)
    results, deltas = [], []
    with evaluation_mode(model):
        for inputs, labels in split.batches(batch_size):
            with torch.no_grad():
                output = model(inputs)
                other = output.logits - output.modality_logits[modality]
            x, baseline, extra = encoder.attribution_inputs(inputs[modality])
            if target_kind == "multilabel":
                targets = (2 * labels - 1).to(other.dtype)
            elif target_kind == "sequence":
                targets = labels
            else:
                targets = torch.zeros(len(labels), 1)  # unused: Captum selects the class with target=
            attribution, delta = layer_conductance.attribute(
                x,
                baselines=baseline,
                target=labels if target_kind == "single" else None,
                additional_forward_args=(other, targets.to(other.device), *extra),
                n_steps=n_steps,
                method=method,
                return_convergence_delta=True,
            )
            attribution = attribution.detach()
            delta = delta.detach()
            if target_kind == "sequence":
                real = labels >= 0
                counts = real.sum(1).to(attribution.dtype)
                attribution = (attribution * counts[:, None, None])[real]
                delta = delta * counts
            results.append(attribution)
            deltas.append(delta)
    return torch.cat(results), torch.cat(deltas)


def conductance_summary(
    model: LateFusionClassifier,
    split: ModalSplit,
    n_steps: int = 20,
    batch_size: int = 16,
    multilabel: bool = False,
) -> dict[str, dict[str, float]]:
    """Average conductance over the neurons and samples of each modality's top-level layer.

    Returns, per modality, the signed mean, the mean absolute value and the mean
    absolute convergence delta.
    """
    summary = {}
    for modality in model.modalities:
        values, delta = modality_conductance(model, split, modality, n_steps, batch_size, multilabel=multilabel)
        summary[modality] = {
            "mean": float(values.mean()),
            "abs_mean": float(values.abs().mean()),
            "delta_abs_mean": float(delta.abs().mean()),
        }
    return summary


def summary_frame(summary: dict[str, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(summary).T.rename_axis("modality")


def conductance_callback(split: ModalSplit, n_steps: int = 20, batch_size: int = 16, multilabel: bool = False):
    """Return a trainer ``callback_factory`` that records conductance on ``split`` after each epoch.

    The history gains ``<modality>_conductance`` (signed mean), ``_conductance_abs``
    (mean absolute value) and ``_conductance_delta`` (mean absolute convergence delta).
    """

    def factory(run_name: str):
        def record(model: LateFusionClassifier, epoch: int) -> dict[str, float]:
            summary = conductance_summary(
                model, split.select_modalities(model.modalities), n_steps, batch_size, multilabel
            )
            row = {}
            for modality, values in summary.items():
                row[f"{modality}_conductance"] = values["mean"]
                row[f"{modality}_conductance_abs"] = values["abs_mean"]
                row[f"{modality}_conductance_delta"] = values["delta_abs_mean"]
            return row

        return record

    return factory
