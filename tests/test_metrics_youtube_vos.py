"""YouTube-VOS seen/unseen evaluation and the submission zip, on the test fixture."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_youtube_vos import HEIGHT, WIDTH, write_fixture

from rvoslib._palette import voc_palette
from rvoslib.data.youtube_vos import YouTubeVOSDataset
from rvoslib.metrics.reference import db_eval_iou, f_measure
from rvoslib.metrics.youtube_vos import (
    YouTubeVOSEvaluator,
    evaluation_frames,
    merge_object_scores,
    seen_categories,
    write_youtube_vos_masks,
    zip_youtube_vos_submission,
)


@pytest.fixture
def ytvos(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "youtube-vos"
    return root, write_fixture(root)


def _prediction(gt: np.ndarray, shift: int) -> np.ndarray:
    """The ground truth moved ``t * shift`` pixels right in frame ``t`` (worse over time)."""
    return np.stack([np.roll(frame, t * shift, axis=1) for t, frame in enumerate(gt)])


def test_seen_categories_and_evaluation_frames(ytvos) -> None:
    root, _ = ytvos
    assert seen_categories(root / "train" / "meta.json") == {"cat", "dog", "zebra"}
    assert evaluation_frames(root / "valid" / "meta.json") == {"vidC": ["00000", "00005", "00010"]}
    with pytest.raises(FileNotFoundError, match="meta.json not found"):
        seen_categories(root / "nowhere.json")
    (root / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="cannot parse .* as JSON"):
        seen_categories(root / "bad.json")
    with pytest.raises(ValueError, match='meta must hold {"videos"'):
        evaluation_frames({"objects": {}})


def test_seen_unseen_scores_against_the_reference(ytvos) -> None:
    """Per object: the mean of the official per-frame J and F over its frames but the first;
    per group: the mean over objects; overall: the mean of the four."""
    root, _ = ytvos
    dataset = YouTubeVOSDataset(root, "train", annotated_only=False)
    seen = {"cat", "zebra"}  # "dog" plays an unseen category
    evaluator = YouTubeVOSEvaluator(seen)
    expected: dict[str, list[tuple[float, float]]] = {"seen": [], "unseen": []}
    for index, shift in zip(range(len(dataset)), (1, 2, 3)):
        item = dataset[index]
        gt = item["masks"].numpy().astype(bool)
        pred = _prediction(gt, shift)
        valid = item["valid"].numpy()
        evaluator.update(
            item["video_id"],
            item["obj_id"],
            torch.from_numpy(pred),
            item["masks"],
            category=item["category"],
            valid=item["valid"],
        )
        frames = np.flatnonzero(valid)[1:]
        j = np.mean([db_eval_iou(gt[t], pred[t]) for t in frames])
        f = np.mean([f_measure(pred[t], gt[t]) for t in frames])
        expected["seen" if item["category"] in seen else "unseen"].append((j, f))
    summary = evaluator.summary()
    for group in ("seen", "unseen"):
        assert summary[f"J_{group}"] == pytest.approx(np.mean([j for j, _ in expected[group]]))
        assert summary[f"F_{group}"] == pytest.approx(np.mean([f for _, f in expected[group]]))
    four = [summary[k] for k in ("J_seen", "J_unseen", "F_seen", "F_unseen")]
    assert summary["overall"] == pytest.approx(np.mean(four))
    assert (summary["num_seen"], summary["num_unseen"]) == (2, 1)
    assert 0 < summary["overall"] < 1
    rows = evaluator.per_object()
    assert [(r["video_id"], r["obj_id"], r["seen"]) for r in rows] == [
        ("vidA", 1, True),
        ("vidA", 2, False),
        ("vidB", 1, True),
    ]
    assert rows[0]["num_frames"] == 3  # annotated frames 00005, 00010, 00015


def test_protocols() -> None:
    gt = np.zeros((4, 16, 16), bool)
    gt[:, 4:12, 4:12] = True
    pred = gt.copy()
    pred[0] = False  # wrong first frame: ignored unless "all"
    pred[3] = False  # wrong last frame: ignored by "semi-supervised"
    results = {}
    for protocol in ("first-excluded", "semi-supervised", "all"):
        evaluator = YouTubeVOSEvaluator({"cat"}, protocol=protocol)
        evaluator.update("v", 1, pred, gt, category="cat")
        results[protocol] = evaluator.summary()["J_seen"]
    assert results == {"first-excluded": pytest.approx(2 / 3), "semi-supervised": 1.0,
                       "all": 0.5}  # fmt: skip


def test_empty_groups_and_unscorable_objects() -> None:
    gt = np.ones((2, 8, 8), bool)
    evaluator = YouTubeVOSEvaluator(["cat"])
    evaluator.update("v", 1, gt, gt, category="cat")
    evaluator.update("v", 2, gt[:1], gt[:1], category="cat")  # one frame: nothing to score
    with pytest.warns(UserWarning, match=r"1 objects have no frame to score .*\('v', 2\)"):
        summary = evaluator.summary()
    assert math.isnan(summary["J_unseen"]) and math.isnan(summary["F_unseen"])
    assert summary["overall"] == 1.0 and summary["num_seen"] == 1 and len(evaluator) == 2


def test_evaluator_errors() -> None:
    gt = np.ones((2, 8, 8), bool)
    with pytest.raises(TypeError, match="seen must be a collection of category names"):
        YouTubeVOSEvaluator("cat")
    with pytest.raises(ValueError, match="protocol must be one of"):
        YouTubeVOSEvaluator({"cat"}, protocol="davis")
    evaluator = YouTubeVOSEvaluator({"cat"})
    with pytest.raises(ValueError, match="category is needed to split seen and unseen, got None"):
        evaluator.update("v", 1, gt, gt, category=None)
    with pytest.raises(ValueError, match=r"pred must be \(T, H, W\), got \(8, 8\)"):
        evaluator.update("v", 1, gt[0], gt, category="cat")
    with pytest.raises(ValueError, match=r"valid must be \(T,\) = \(2,\) .* got \(3,\)"):
        evaluator.update("v", 1, gt, gt, category="cat", valid=[True] * 3)
    with pytest.raises(ValueError, match="pred and gt must have the same shape"):
        evaluator.update("v", 1, gt, gt[:, :4], category="cat")
    evaluator.update("v", 1, gt, gt, category="cat")
    with pytest.raises(ValueError, match="object 1 of video 'v' was already scored"):
        evaluator.update("v", 1, gt, gt, category="cat")


def test_merge_object_scores_against_a_loop() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((3, 2, 5, 6))
    ids = [2, 5, 9]
    merged = merge_object_scores(torch.from_numpy(scores), ids, threshold=0.6)
    expected = np.zeros((2, 5, 6), np.uint8)
    for t in range(2):
        for y in range(5):
            for x in range(6):
                best = max(range(3), key=lambda n: scores[n, t, y, x])
                expected[t, y, x] = ids[best] if scores[best, t, y, x] > 0.6 else 0
    assert merged.dtype == np.uint8 and np.array_equal(merged, expected)
    assert merge_object_scores(np.zeros((0, 1, 2, 2)), []).shape == (1, 2, 2)
    with pytest.raises(ValueError, match=r"scores must be \(N, T, H, W\) with N = len\(obj_ids\)"):
        merge_object_scores(scores, [1, 2])
    with pytest.raises(ValueError, match=r"obj_ids must be in 1..255, got \[0, 1, 2\]"):
        merge_object_scores(scores, [0, 1, 2])


def test_submission_zip_file_by_file(ytvos, tmp_path: Path) -> None:
    """Valid split: segment each object from its first mask, merge by score, write the PNGs of
    the listed frames at the original size, zip; then read every file back."""
    root, truth = ytvos
    labels = truth[("valid", "vidC")]["labels"]
    dataset = YouTubeVOSDataset(root, "valid")
    frame_ids = evaluation_frames(root / "valid" / "meta.json")["vidC"]
    scores = np.zeros((len(dataset), len(frame_ids), HEIGHT, WIDTH))
    obj_ids = []
    for index in range(len(dataset)):
        item = dataset[index]
        start = frame_ids.index(item["frame_ids"][0])  # objects start at their first frame
        for offset, frame_id in enumerate(item["frame_ids"]):
            scores[index, start + offset] = (labels[frame_id] == item["obj_id"]) * 0.9
        obj_ids.append(item["obj_id"])
    merged = merge_object_scores(scores, obj_ids)
    out = tmp_path / "submission"
    listed = evaluation_frames(root / "valid" / "meta.json")
    paths = write_youtube_vos_masks(
        out, "vidC", merged, frame_ids, size=(HEIGHT, WIDTH), keep=listed["vidC"]
    )
    assert [p.relative_to(out).as_posix() for p in paths] == [
        f"Annotations/vidC/{f}.png" for f in frame_ids
    ]
    archive = zip_youtube_vos_submission(out, expected=listed)
    assert archive == out / "submission.zip"
    palette = voc_palette().reshape(-1).tolist()
    with zipfile.ZipFile(archive) as zipped:
        assert zipped.namelist() == [f"Annotations/vidC/{f}.png" for f in frame_ids]
        for frame_id in frame_ids:
            with Image.open(io.BytesIO(zipped.read(f"Annotations/vidC/{frame_id}.png"))) as image:
                assert image.mode == "P" and image.size == (WIDTH, HEIGHT)
                assert image.getpalette()[:30] == palette[:30]
                assert np.array_equal(np.asarray(image), labels[frame_id])


def test_only_listed_frames_are_written_and_zipped(tmp_path: Path) -> None:
    masks = np.zeros((3, 4, 5), np.uint8)
    masks[:, 1, 1] = [1, 2, 3]
    names = ["00000", "00005", "00010"]
    written = write_youtube_vos_masks(tmp_path, "v", masks, names, keep={"00005", "00010"})
    assert [p.name for p in written] == ["00005.png", "00010.png"]
    write_youtube_vos_masks(tmp_path, "extra", masks[:1], ["00000"])
    archive = zip_youtube_vos_submission(
        tmp_path, tmp_path / "out.zip", expected={"v": ["00005", "00010"]}
    )
    with zipfile.ZipFile(archive) as zipped:  # the unlisted video is left out
        assert zipped.namelist() == ["Annotations/v/00005.png", "Annotations/v/00010.png"]
    with zipfile.ZipFile(zip_youtube_vos_submission(tmp_path)) as zipped:
        assert len(zipped.namelist()) == 3
    with pytest.raises(
        FileNotFoundError, match=r"1 frames listed for evaluation have no PNG .*v/00000.png"
    ):
        zip_youtube_vos_submission(tmp_path, expected={"v": names})
    with pytest.raises(FileNotFoundError, match="no Annotations folder to zip"):
        zip_youtube_vos_submission(tmp_path / "empty")


def test_writer_errors(tmp_path: Path) -> None:
    masks = np.zeros((2, 4, 5), np.int64)
    with pytest.raises(ValueError, match=r"masks must be \(T, H, W\) object ids, got \(4, 5\)"):
        write_youtube_vos_masks(tmp_path, "v", masks[0], ["0"])
    with pytest.raises(ValueError, match=r"frame_ids must name the 2 frames of masks \(2, 4, 5\)"):
        write_youtube_vos_masks(tmp_path, "v", masks, ["0"])
    with pytest.raises(ValueError, match=r"masks are 4x5 but the original frames are 8x10 \(HxW\)"):
        write_youtube_vos_masks(tmp_path, "v", masks, ["0", "1"], size=(8, 10))
    masks[0, 0, 0] = 300
    with pytest.raises(ValueError, match=r"object ids in 0..255, got 0..300"):
        write_youtube_vos_masks(tmp_path, "v", torch.from_numpy(masks), ["0", "1"])
