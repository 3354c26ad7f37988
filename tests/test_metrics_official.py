"""Official-layout evaluation: OSVOS on davis-mini, refer-davis on a synthetic root, tables."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
from _davis_mini import OFFICIAL_ALL, OFFICIAL_SEMI, require_davis_mini, toy_video
from PIL import Image

from rvoslib.data.io import write_mask
from rvoslib.metrics import (
    EVAL_PROTOCOLS,
    GLOBAL_COLUMNS,
    DAVISFolderResult,
    RefDAVISWriter,
    davis_palette,
    evaluate_davis_folder,
    read_official_tables,
    score_sequence,
    write_official_tables,
)
from rvoslib.metrics import reference as ref

# The bytes davis2017-evaluation's evaluation_method.py wrote for OSVOS on davis-mini.
OFFICIAL_GLOBAL_CSV = (
    "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
    "0.941,0.936,1.000,0.056,0.946,1.000,0.085\n"
)
OFFICIAL_SEQUENCE_CSV = (
    "Sequence,J-Mean,F-Mean\nblackswan_1,0.943,0.974\ncar-shadow_1,0.928,0.917\n"
)


@pytest.fixture
def osvos() -> tuple[Path, Path]:
    root = require_davis_mini()
    return root / "predictions" / "osvos", root


@pytest.mark.parametrize(
    ("protocol", "official"), [("semi-supervised", OFFICIAL_SEMI), ("all", OFFICIAL_ALL)]
)
def test_osvos_folder_reproduces_official_numbers(osvos, protocol, official) -> None:
    result = evaluate_davis_folder(*osvos, protocol)
    assert [obj.name for obj in result.objects] == ["blackswan_1", "car-shadow_1"]
    for obj in result.objects:
        j_official, f_official = official[obj.sequence]
        assert abs(obj.stats["J"] - j_official) < 1e-9
        assert abs(obj.stats["F"] - f_official) < 1e-9
    frames = {"semi-supervised": [48, 38], "all": [50, 40]}[protocol]
    assert [obj.stats["num_frames"] for obj in result.objects] == frames
    summary = result.summary()
    assert summary["JF"] == pytest.approx(
        np.mean([sum(v) / 2 for v in official.values()]), abs=1e-9
    )
    assert summary["num_objects"] == 2 and summary["num_annotators"] == 0
    assert result.ground_truth == osvos[1] / "Annotations" / "480p"


def test_official_tables_round_trip(osvos, tmp_path: Path) -> None:
    result = evaluate_davis_folder(*osvos, "semi-supervised")
    paths = write_official_tables(result, tmp_path)
    assert [p.name for p in paths] == ["global_results-val.csv", "per-sequence_results-val.csv"]
    assert paths[0].read_text() == OFFICIAL_GLOBAL_CSV
    assert paths[1].read_text() == OFFICIAL_SEQUENCE_CSV
    means, rows = read_official_tables(tmp_path)
    assert list(means) == list(GLOBAL_COLUMNS) and means["J&F-Mean"] == 0.941
    assert rows == [("blackswan_1", 0.943, 0.974), ("car-shadow_1", 0.928, 0.917)]
    write_official_tables(result, tmp_path / "five", float_format="%.5f")
    assert read_official_tables(tmp_path / "five")[1][0] == ("blackswan_1", 0.94302, 0.9741)


def test_table_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"official table not found: .*global_results-val"):
        read_official_tables(tmp_path)
    (tmp_path / "global_results-val.csv").write_text("J,F\n0.5,0.5\n")
    (tmp_path / "per-sequence_results-val.csv").write_text("Sequence,J-Mean,F-Mean\n")
    with pytest.raises(ValueError, match=r"must have the official columns \['J&F-Mean'"):
        read_official_tables(tmp_path)
    (tmp_path / "global_results-val.csv").write_text(",".join(GLOBAL_COLUMNS) + "\n1,2,3,4,5,6,7\n")
    (tmp_path / "per-sequence_results-val.csv").write_text("Sequence,J-Mean,F-Mean\nbear_1,0.5\n")
    with pytest.raises(ValueError, match=r"per-sequence_results-val.csv: row 2 must have 3 cells"):
        read_official_tables(tmp_path)
    (tmp_path / "global_results-val.csv").write_text(",".join(GLOBAL_COLUMNS) + "\n1,2\n")
    with pytest.raises(ValueError, match=r"global_results-val.csv must have one row of 7 values"):
        read_official_tables(tmp_path)
    empty = DAVISFolderResult("all", "val")
    with pytest.raises(ValueError, match="float_format must be like '%.3f', got '%d%d'"):
        write_official_tables(empty, tmp_path, "%d%d")
    write_official_tables(empty, tmp_path / "empty")
    assert (tmp_path / "empty/global_results-val.csv").read_text().endswith("\n,,,,,,\n")


# --- refer-davis on a synthetic multi-object root -------------------------------------------


def _synthetic_root(root: Path) -> dict[str, np.ndarray]:
    """Two videos with 3 and 2 objects and void pixels, in Annotations_unsupervised."""
    videos = {}
    for name, (frames, objects, seed) in {"alpha": (5, 3, 11), "beta": (4, 2, 12)}.items():
        labels = toy_video(frames, 40, 56, objects, seed=seed)[1].copy()
        labels[1:, :, 20] = 255  # a void column in the later frames
        for t, label in enumerate(labels):
            write_mask(root / "Annotations_unsupervised/480p" / name / f"{t:05d}.png", label)
        videos[name] = labels
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("alpha\nbeta\n")
    return videos


def _predictions(videos: dict[str, np.ndarray]) -> dict[tuple[str, int, int], np.ndarray]:
    """Probabilities per (video, obj_id, annotator k); in alpha, k = 1 swaps objects 1 and 2."""
    rng = np.random.default_rng(0)
    probabilities = {}
    for name, labels in videos.items():
        for obj_id in range(1, int(labels[0].max()) + 1):  # frame 0 has no void
            for k in range(4):
                target = {1: 2, 2: 1}.get(obj_id, obj_id) if (name, k) == ("alpha", 1) else obj_id
                mask = np.roll(labels == target, shift=k % 2, axis=-1).astype(np.float32)
                noise = rng.uniform(0.0, 0.55, mask.shape).astype(np.float32)
                values = np.clip(0.45 * mask + noise, 0, 1)
                values[:, 0, :4] = 0.5  # exactly the threshold: kept, as ReferFormer keeps it
                probabilities[(name, obj_id, k)] = values
    return probabilities


def _official_unsupervised(pred: np.ndarray, gt: np.ndarray) -> list[tuple[float, float, ...]]:
    """Per object (J stats, F stats) by the official definition, with a brute-force matching."""
    void = gt == 255
    gt = np.where(void, 0, gt)
    num_gt, num_pred = int(gt[0].max()), int(pred.max())
    rows = max(num_gt, num_pred)
    j = np.array(
        [
            [
                [ref.db_eval_iou(gt[t] == c, pred[t] == r, void[t]) for t in range(len(gt))]
                for c in range(1, num_gt + 1)
            ]
            for r in range(1, rows + 1)
        ]
    )
    f = np.array(
        [
            [
                [ref.f_measure(pred[t] == r, gt[t] == c, void[t]) for t in range(len(gt))]
                for c in range(1, num_gt + 1)
            ]
            for r in range(1, rows + 1)
        ]
    )
    score = (j.mean(-1) + f.mean(-1)) / 2
    best = max(
        itertools.permutations(range(rows), num_gt),
        key=lambda chosen: sum(score[r, c] for c, r in enumerate(chosen)),
    )
    pairs = sorted((r, c) for c, r in enumerate(best))  # the official rows follow the predictions
    return [(ref.db_statistics(j[r, c]), ref.db_statistics(f[r, c]), (r, c)) for r, c in pairs]


def test_refer_davis_equals_independent_computation(tmp_path: Path) -> None:
    videos = _synthetic_root(tmp_path / "DAVIS")
    probabilities = _predictions(videos)
    out = tmp_path / "out"
    with RefDAVISWriter(out) as writer:
        for (name, obj_id, k), values in probabilities.items():
            exp_id = str(4 * (obj_id - 1) + k)
            frame_ids = [f"{t:05d}" for t in range(len(values))]
            writer.add(name, exp_id, obj_id, values[:2], frame_ids[:2])  # in two chunks
            writer.add(name, exp_id, obj_id, values[2:], frame_ids[2:])
    result = evaluate_davis_folder(out, tmp_path / "DAVIS", "refer-davis")
    assert list(result.annotators) == ["anno_0", "anno_1", "anno_2", "anno_3"]
    assert result.ground_truth == tmp_path / "DAVIS/Annotations_unsupervised/480p"
    tables, swapped = [], False
    for k in range(4):
        objects = []
        for name, labels in videos.items():
            num = int(labels[0][labels[0] != 255].max())
            stacked = [np.full(labels.shape, 0.1, np.float32)]
            for obj_id in range(1, num + 1):
                values = probabilities[(name, obj_id, k)]
                stacked.append(np.where(values < 0.5, 0, values))
            merged = np.argmax(np.stack(stacked), axis=0)
            for t in range(len(labels)):  # the official layout, read back
                image = Image.open(out / f"anno_{k}" / name / f"{t:05d}.png")
                assert image.mode == "P" and image.size == (56, 40)
                assert image.getpalette()[:12] == davis_palette()[:4].ravel().tolist()
                np.testing.assert_array_equal(np.asarray(image), merged[t])
            for j_stats, f_stats, (r, c) in _official_unsupervised(merged, labels):
                swapped |= r != c
                objects.append((j_stats, f_stats))
        scored = result.annotators[f"anno_{k}"]
        assert len(scored.objects) == len(objects) == 5
        for obj, (j_stats, f_stats) in zip(scored.objects, objects):
            np.testing.assert_allclose(
                [
                    obj.stats[key]
                    for key in ("J", "J_recall", "J_decay", "F", "F_recall", "F_decay")
                ],
                [*j_stats, *f_stats],
                rtol=0,
                atol=1e-12,
            )
        j_mean = np.mean([o[0][0] for o in objects])
        f_mean = np.mean([o[1][0] for o in objects])
        tables.append([(j_mean + f_mean) / 2, j_mean, f_mean])
    assert swapped  # the Hungarian matching was needed
    means = result.global_means()
    expected = np.mean(tables, axis=0)
    assert [means["J&F-Mean"], means["J-Mean"], means["F-Mean"]] == pytest.approx(
        expected, abs=1e-12
    )
    paths = write_official_tables(result, out)
    assert len(paths) == 10 and (out / "anno_3/per-sequence_results-val.csv").is_file()
    top, rows = read_official_tables(out)
    assert [name for name, *_ in rows] == ["alpha_1", "alpha_2", "alpha_3", "beta_1", "beta_2"]
    assert top["J-Mean"] == float(f"{expected[1]:.3f}")


def test_refer_davis_writer_errors(tmp_path: Path) -> None:
    writer = RefDAVISWriter(tmp_path)
    ones = np.ones((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"obj_id must be an integer object id in 1..255, got 0"):
        writer.add("v", "0", 0, ones, ["a", "b"])
    with pytest.raises(ValueError, match=r"masks must be probabilities in \[0, 1\].*\[0.0, 3.0\]"):
        writer.add("v", "0", 1, ones * np.array([0, 3], np.float32)[:, None, None], ["a", "b"])
    with pytest.raises(ValueError, match=r"one name per frame \(2\), got 1"):
        writer.add("v", "0", 1, ones, ["a"])
    writer.add("v", "0", 1, ones, ["a", "b"])
    with pytest.raises(ValueError, match=r"'v', expression 0: frame\(s\) \['a'\] given twice"):
        writer.add("v", "0", 1, ones[:1], ["a"])
    with pytest.raises(ValueError, match=r"masks of expression 4 are 5x4 but earlier ones are 4x4"):
        writer.add("v", "4", 2, np.ones((1, 4, 5)), ["a"])
    with pytest.raises(ValueError, match=r"exp_id must be a non-negative integer .* got 'x'"):
        writer.add("w", "x", 1, ones, ["a", "b"])
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 2"):
        RefDAVISWriter(tmp_path, threshold=2)
    assert [p.relative_to(tmp_path).as_posix() for p in writer.close()] == [
        "anno_0/v/a.png",
        "anno_0/v/b.png",
    ]


def test_folder_errors(osvos, tmp_path: Path) -> None:
    predictions, root = osvos
    with pytest.raises(
        ValueError, match=r"protocol must be one of \('all', 'semi-supervised', 'refer-davis'\)"
    ):
        evaluate_davis_folder(predictions, root, "unsupervised")
    with pytest.raises(FileNotFoundError, match="predictions folder not found"):
        evaluate_davis_folder(tmp_path / "none", root)
    with pytest.raises(FileNotFoundError, match="DAVIS root not found"):
        evaluate_davis_folder(predictions, tmp_path / "none")
    with pytest.raises(
        FileNotFoundError, match=r"split file not found: .*ImageSets/2017/train.txt"
    ):
        evaluate_davis_folder(predictions, root, split="train")
    with pytest.raises(
        FileNotFoundError, match=r"annotation folder not found: .*Annotations_unsupervised"
    ):
        evaluate_davis_folder(predictions, root, annotations="Annotations_unsupervised")
    with (
        pytest.warns(UserWarning, match=r"Annotations_unsupervised/480p not found: scoring"),
        pytest.raises(ValueError, match=r"has no anno_<k> folder .* protocol 'all' or"),
    ):
        evaluate_davis_folder(predictions, root, "refer-davis", sequences=["blackswan"])
    (tmp_path / "blackswan").mkdir()
    with pytest.raises(FileNotFoundError, match=r"blackswan frame 00000 .* not found: .*00000.png"):
        evaluate_davis_folder(tmp_path, root, sequences=["blackswan"])
    with pytest.raises(FileNotFoundError, match=r"no predictions for sequence 'car-shadow'"):
        evaluate_davis_folder(tmp_path, root, sequences=["car-shadow"])
    empty_root = tmp_path / "root"
    (empty_root / "ImageSets/2017").mkdir(parents=True)
    (empty_root / "ImageSets/2017/val.txt").write_text("blackswan\n")
    with pytest.raises(FileNotFoundError, match=r"Annotations/480p \(the 'all' protocol .* too\)"):
        evaluate_davis_folder(predictions, empty_root, "all")
    (empty_root / "Annotations/480p/blackswan").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no ground-truth PNGs for 'blackswan'"):
        evaluate_davis_folder(predictions, empty_root, "all")
    small = tmp_path / "small"
    for t in range(50):
        write_mask(small / "blackswan" / f"{t:05d}.png", np.zeros((64, 128), np.uint8))
    with pytest.raises(ValueError, match=r"is 128x64 but the ground truth .* is 854x480; write"):
        evaluate_davis_folder(small, root, sequences=["blackswan"])
    (small / "blackswan" / "00000.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match=r"cannot read image .*00000.png"):
        evaluate_davis_folder(small, root, sequences=["blackswan"])
    Image.new("RGB", (4, 4)).save(small / "blackswan" / "00000.png")
    with pytest.raises(
        OSError, match=r"expected an indexed \('P'\) PNG of object ids, got mode 'RGB'"
    ):
        evaluate_davis_folder(small, root, sequences=["blackswan"])


def test_score_sequence_rules() -> None:
    gt = np.zeros((4, 8, 8), np.int64)
    gt[:, 2:6, 2:6] = 1
    with pytest.raises(
        ValueError, match=r"predictions hold object id 2 but the ground truth has 1"
    ):
        score_sequence(gt * 2, gt, "semi-supervised", "seq")
    with pytest.raises(ValueError, match=r"hold id 21, above the 20 proposals"):
        score_sequence(gt * 21, gt, "refer-davis", "seq")
    with pytest.raises(
        ValueError, match=r"'semi-supervised' evaluates no frame of a sequence of 2"
    ):
        score_sequence(gt[:2], gt[:2], "semi-supervised", "seq")
    with pytest.raises(ValueError, match=r"pred \(3, 8, 8\) and gt \(4, 8, 8\)"):
        score_sequence(gt[:3], gt, "all", "seq")
    with pytest.raises(ValueError, match="protocol must be one of"):
        score_sequence(gt, gt, "davis", "seq")
    # refer-davis: an extra predicted object is left unmatched, a missing one scores 0.
    pred = gt * 2
    pred[:, 0, 0] = 1
    (obj,) = score_sequence(pred, gt, "refer-davis", "seq")
    assert (obj.gt_id, obj.pred_id, obj.stats["J"]) == (1, 2, 1.0)
    (empty,) = score_sequence(np.zeros_like(gt), gt, "refer-davis", "seq")
    assert (empty.pred_id, empty.stats["J"], empty.stats["F"]) == (0, 0.0, 0.0)
    assert EVAL_PROTOCOLS == ("all", "semi-supervised", "refer-davis")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score_sequence(gt, gt, "all", "seq")[0].stats["JF"] == 1.0
