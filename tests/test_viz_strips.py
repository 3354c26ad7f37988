"""Training overlay strips: a prediction row, and a ground-truth row when the item has masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rvoslib.viz import write_overlay_strips

T, H, W = 4, 24, 32


class _EmptyModel(torch.nn.Module):
    """Predicts no object anywhere (logits of -10), and remembers the batch keys it got."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[set[str]] = []

    def predict(self, batch: dict, clip_len: int | None = None) -> torch.Tensor:
        self.seen.append(set(batch))
        frames = batch["frames"]
        return torch.full((*frames.shape[:2], 1, *frames.shape[-2:]), -10.0)


def _known_masks() -> torch.Tensor:
    """``(T, H, W)`` float: a rectangle that moves right by 3 px a frame."""
    masks = torch.zeros(T, H, W)
    for t in range(T):
        masks[t, 5:15, 4 + 3 * t : 12 + 3 * t] = 1.0
    return masks


def _item(masks: torch.Tensor | None) -> dict:
    generator = torch.Generator().manual_seed(0)
    item = {
        "frames": torch.randn(T, 3, H, W, generator=generator),  # normalised frames
        "video_id": "vid",
        "exp_id": "0",
        "expression": "the moving box",
    }
    if masks is not None:
        item["masks"] = masks
    return item


def _collate(items: list[dict]) -> dict:
    batch = {"frames": torch.stack([item["frames"] for item in items])}
    for key in ("video_id", "exp_id", "expression"):
        batch[key] = [item[key] for item in items]
    return batch


@pytest.mark.parametrize("layout", ["THW", "T1HW"])
def test_two_rows_when_the_item_has_masks(tmp_path, layout):
    masks = _known_masks()
    given = masks if layout == "THW" else masks[:, None]
    (path,) = write_overlay_strips(_EmptyModel(), [_item(given)], tmp_path, 1, collate_fn=_collate)
    picture = np.asarray(Image.open(path).convert("RGB"))
    band = (picture.shape[0] - 2 * H) // 2
    assert picture.shape == (2 * (band + H), T * W, 3) and 8 <= band <= 30
    prediction = picture[band : band + H]
    truth = picture[2 * band + H :]
    # the prediction is empty, so its row is the plain frames: the truth row differs from it
    # exactly inside the known mask
    changed = (truth != prediction).any(axis=-1)
    expected = np.concatenate(list(masks.bool().numpy()), axis=1)
    np.testing.assert_array_equal(changed, expected)
    for top in (0, band + H):  # each label band: white with a dark label in it
        label = picture[top : top + band]
        assert (label == 255).all(axis=-1).mean() > 0.5
        assert (label.sum(axis=-1) < 150).any()
    assert (tmp_path / "captions.txt").read_text() == "vid_0.png: the moving box\n"


def test_one_row_without_masks(tmp_path):
    (path,) = write_overlay_strips(_EmptyModel(), [_item(None)], tmp_path, 1, collate_fn=_collate)
    assert np.asarray(Image.open(path)).shape == (H, T * W, 3)


def test_frames_per_strip_applies_to_both_rows(tmp_path):
    masks = _known_masks()
    (path,) = write_overlay_strips(
        _EmptyModel(), [_item(masks)], tmp_path, 1, collate_fn=_collate, frames_per_strip=2
    )
    picture = np.asarray(Image.open(path).convert("RGB"))
    band = (picture.shape[0] - 2 * H) // 2
    assert picture.shape[1] == 2 * W
    changed = (picture[2 * band + H :] != picture[band : band + H]).any(axis=-1)
    np.testing.assert_array_equal(changed, np.concatenate([masks[0], masks[2]], axis=1) > 0)


def test_masks_of_a_wrong_shape_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"dataset\[0\]\['masks'\] must be \(T, H, W\)"):
        write_overlay_strips(
            _EmptyModel(), [_item(torch.zeros(T, 2, H, W))], tmp_path, 1, collate_fn=_collate
        )


def test_vos_items_give_the_first_mask_to_the_model_and_show_the_truth(tmp_path):
    from rvoslib.data import SyntheticVOSDataset
    from rvoslib.data.collate import collator_for
    from rvoslib.models import create_model

    model = create_model("s2s-tiny")
    dataset = SyntheticVOSDataset(num_videos=1, num_frames=3, size=32)
    collate = collator_for(model.inputs)
    (path,) = write_overlay_strips(model, dataset, tmp_path, 1, collate_fn=collate)
    picture = np.asarray(Image.open(path).convert("RGB"))
    band = (picture.shape[0] - 2 * 32) // 2
    assert picture.shape == (2 * (band + 32), 3 * 32, 3) and band > 0
    spy = _EmptyModel()
    write_overlay_strips(spy, dataset, tmp_path, 1, collate_fn=collate)
    assert "first_mask" in spy.seen[0]
