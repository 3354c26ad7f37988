"""RVOSCollator: shapes, time padding, tokenizer protocol, errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from rvoslib.data import RVOSCollator, SyntheticRVOSDataset


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
