import pytest
import torch

from mslr_utils.conductance import modality_conductance
from mslr_utils.data.splits import ModalSplit
from mslr_utils.models import LateFusionClassifier, TextEncoder, mean_pool
from conftest import make_model, make_split

TEXTS = ["Lovely dress, fits well.", "The fabric ripped after one wash and the seams came apart. " * 12]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return TextEncoder(finetune_layers=1).eval()


def test_fused_logits_are_sum_of_modality_logits():
    model = make_model(fusion_bias=True).eval()
    with torch.no_grad():
        model.fusion_bias.fill_(0.25)
        output = model(make_split("val", 5, 1).inputs)
    total = output.modality_logits["a"] + output.modality_logits["b"] + 0.25
    assert torch.allclose(output.logits, total)


def test_missing_modality_input_raises():
    with pytest.raises(KeyError, match=r"lack modalities \['b'\]"):
        make_model()({"a": {"features": torch.zeros(2, 6)}})


def test_overlong_text_truncated_with_attention_mask(encoder):
    tokens = encoder.tokenize(TEXTS, max_length=16)
    assert tokens["input_ids"].shape == (2, 16)
    assert tokens["attention_mask"][1].sum() == 16
    assert tokens["input_ids"][1, -1] == encoder.tokenizer.sep_token_id
    short = int(tokens["attention_mask"][0].sum())
    assert short < 16
    assert torch.all(tokens["input_ids"][0, short:] == encoder.tokenizer.pad_token_id)


def test_cached_and_attribution_paths_match_transformers(encoder):
    tokens = encoder.tokenize(TEXTS, max_length=24)
    with torch.no_grad():
        reference_hidden = encoder.bert(**tokens).last_hidden_state
        reference = encoder.top(mean_pool(reference_hidden, tokens["attention_mask"]))
        direct = encoder(tokens)
        cached = encoder(encoder.cache_frozen(tokens))
        x, _, extra = encoder.attribution_inputs(tokens)
        attributed = encoder.forward_from_attribution(x, *extra)
    assert torch.allclose(direct, reference, atol=1e-5)
    assert torch.allclose(cached, reference, atol=1e-5)
    assert torch.allclose(attributed, reference, atol=1e-5)


def test_frozen_layers_have_no_gradient(encoder):
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert any(n.startswith("bert.encoder.layer.5.") for n in trainable)
    assert not any(n.startswith("bert.encoder.layer.4.") for n in trainable)
    assert not any(n.startswith("bert.embeddings.") for n in trainable)


def test_attribution_baseline_keeps_cls_and_sep(encoder):
    tokens = encoder.tokenize(TEXTS[:1], max_length=16)
    baseline = encoder.baseline_ids(tokens["input_ids"])[0]
    assert baseline[0] == encoder.tokenizer.cls_token_id
    assert (baseline == encoder.tokenizer.sep_token_id).sum() == 1
    kept = set(encoder.kept_token_ids) | {encoder.tokenizer.pad_token_id}
    assert set(baseline.tolist()) <= kept


def test_text_conductance_runs_from_embeddings(encoder):
    tokens = encoder.tokenize(TEXTS, max_length=16)
    model = LateFusionClassifier({"text": encoder}, num_classes=3).eval()
    split = ModalSplit("val", {"text": tokens}, torch.tensor([1, 2]))
    values, delta = modality_conductance(model, split, "text", n_steps=32)
    assert values.shape == (2, 256)
    assert delta.abs().max() < 0.05


def test_missing_model_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json.*text_model_dir"):
        TextEncoder(tmp_path / "absent")


def test_invalid_finetune_layers_raise():
    with pytest.raises(ValueError, match="finetune_layers must be between 0 and 6"):
        TextEncoder(finetune_layers=7)


def test_full_finetune_trains_whole_encoder():
    encoder = TextEncoder(finetune_layers=None).eval()
    assert encoder.frozen_layers == 0
    assert all(p.requires_grad for p in encoder.parameters())
    tokens = encoder.tokenize(TEXTS, max_length=16)
    with torch.no_grad():
        reference = encoder.top(mean_pool(encoder.bert(**tokens).last_hidden_state, tokens["attention_mask"]))
        assert torch.allclose(encoder(tokens), reference, atol=1e-5)
    with pytest.raises(ValueError, match="all layers are trained"):
        encoder.cache_frozen(tokens)
