"""DAVIS J and F: official values on davis-mini, hand-computed cases, properties, CPU/CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _davis_mini import OFFICIAL_ALL, OFFICIAL_SEMI, davis_mini_path, load_osvos
from hypothesis import given, settings
from hypothesis import strategies as st

from rvoslib.metrics import (
    boundary_f_measure,
    boundary_tolerance,
    disk_footprint,
    evaluate_sequence,
    region_similarity,
    seg2bmap,
    sequence_statistics,
)
from rvoslib.metrics import reference as ref

load_davis_mini = load_osvos


@pytest.fixture(scope="module", params=sorted(OFFICIAL_SEMI))
def osvos(request: pytest.FixtureRequest) -> tuple[str, np.ndarray, np.ndarray]:
    return (request.param, *load_davis_mini(request.param))


# --- official numbers -------------------------------------------------------------------------


def test_official_values_semi_supervised(osvos) -> None:
    name, gt, pred = osvos
    result = evaluate_sequence(pred, gt, protocol="semi-supervised")
    assert result["J"] == pytest.approx(OFFICIAL_SEMI[name][0], abs=1e-6)
    assert result["F"] == pytest.approx(OFFICIAL_SEMI[name][1], abs=1e-6)
    assert result["num_frames"] == len(gt) - 2


def test_official_values_all_frames(osvos) -> None:
    name, gt, pred = osvos
    j_values = region_similarity(pred, gt)
    f_values = boundary_f_measure(pred, gt)
    assert j_values.shape == f_values.shape == (len(gt),)
    assert j_values.dtype == f_values.dtype == np.float64
    assert j_values.mean() == pytest.approx(OFFICIAL_ALL[name][0], abs=1e-6)
    assert f_values.mean() == pytest.approx(OFFICIAL_ALL[name][1], abs=1e-6)


def test_batched_matches_frame_by_frame_reference(osvos) -> None:
    _, gt, pred = osvos
    frames = range(0, len(gt), 9)
    f_values = boundary_f_measure(pred, gt)
    for t in frames:
        assert f_values[t] == ref.f_measure(pred[t], gt[t])
        assert region_similarity(pred[t], gt[t]) == ref.db_eval_iou(gt[t], pred[t])


# --- boundary definition and tolerance --------------------------------------------------------


def test_seg2bmap_hand_cases() -> None:
    square = np.zeros((4, 4), dtype=np.uint8)
    square[1:3, 1:3] = 1
    expected = [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert seg2bmap(square).astype(int).tolist() == expected
    corner = np.zeros((3, 3), dtype=bool)
    corner[2, 2] = True  # the last row / column compare only with neighbours that exist
    assert seg2bmap(corner).astype(int).tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert not seg2bmap(np.ones((5, 7))).any()  # a full-frame mask has no boundary
    assert not seg2bmap(torch.zeros(2, 5, 7)).any()
    assert isinstance(seg2bmap(torch.ones(5, 7)), torch.Tensor)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 2**32 - 1),
)
def test_seg2bmap_matches_official_steps(frames: int, height: int, width: int, seed: int) -> None:
    masks = np.random.default_rng(seed).random((frames, height, width)) > 0.5
    expected = np.stack([ref.seg2bmap(mask) for mask in masks])
    np.testing.assert_array_equal(seg2bmap(masks), expected)


@pytest.mark.parametrize("shape", [(n, h, w) for n in (1, 2) for h in (1, 2, 3) for w in (1, 2, 3)])
def test_seg2bmap_and_f_on_tiny_shapes(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(8):
        pred, gt = rng.random(shape) > 0.5, rng.random(shape) > 0.5
        np.testing.assert_array_equal(seg2bmap(pred), np.stack([ref.seg2bmap(m) for m in pred]))
        expected = [ref.f_measure(p, g) for p, g in zip(pred, gt)]
        assert boundary_f_measure(pred, gt).tolist() == expected


def test_disk_footprint() -> None:
    assert disk_footprint(8).sum() == 197
    assert disk_footprint(0).tolist() == [[True]]
    assert disk_footprint(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match="radius must be a non-negative integer, got -1"):
        disk_footprint(-1)


def test_disk_footprint_matches_skimage() -> None:
    morphology = pytest.importorskip("skimage.morphology")
    for radius in range(12):
        np.testing.assert_array_equal(disk_footprint(radius), morphology.disk(radius).astype(bool))


def test_boundary_tolerance() -> None:
    assert boundary_tolerance(0.008, 480, 854) == 8
    assert boundary_tolerance(0.008, 64, 64) == 1
    assert boundary_tolerance(3, 64, 64) == 3
    with pytest.raises(ValueError, match="whole number, got 2.5"):
        boundary_tolerance(2.5, 64, 64)
    with pytest.raises(ValueError, match="bound_th must be positive, got 0"):
        boundary_tolerance(0, 64, 64)


def test_f_measure_hand_case() -> None:
    gt = np.zeros((8, 8), dtype=bool)
    gt[:, :4] = True  # boundary: column 3, 8 pixels
    pred = gt.copy()
    pred[4:, 4:6] = True  # boundary: column 3 rows 0-3, (3, 4), (3, 5), column 5 rows 4-7
    # radius 1: pred matched 5 of 10, gt matched 5 of 8 -> F = 2 * 0.5 * 0.625 / 1.125 = 5 / 9
    assert boundary_f_measure(pred, gt, bound_th=1) == pytest.approx(5 / 9, abs=1e-15)
    assert ref.f_measure(pred, gt, bound_th=1) == pytest.approx(5 / 9, abs=1e-15)
    shifted = np.zeros((8, 8), dtype=bool)
    shifted[:, :6] = True  # boundary two columns away from gt's
    assert boundary_f_measure(shifted, gt, bound_th=1) == 0.0
    assert boundary_f_measure(shifted, gt, bound_th=2) == 1.0


def test_empty_mask_conventions() -> None:
    empty = np.zeros((2, 16, 16), dtype=bool)
    blob = empty.copy()
    blob[:, 4:10, 4:10] = True
    full = np.ones_like(empty)
    # J: empty union -> 1, otherwise I / U.
    assert region_similarity(empty, empty).tolist() == [1.0, 1.0]
    assert region_similarity(blob, empty).tolist() == [0.0, 0.0]
    assert region_similarity(full, empty).tolist() == [0.0, 0.0]
    # F: both boundaries empty -> 1; exactly one empty -> 0.
    assert boundary_f_measure(empty, empty).tolist() == [1.0, 1.0]
    assert boundary_f_measure(blob, empty).tolist() == [0.0, 0.0]
    assert boundary_f_measure(empty, blob).tolist() == [0.0, 0.0]
    assert boundary_f_measure(full, empty).tolist() == [1.0, 1.0]  # no boundary in either
    for pred, gt in [(empty[0], empty[0]), (blob[0], empty[0]), (empty[0], blob[0])]:
        assert boundary_f_measure(pred, gt) == ref.f_measure(pred, gt)


def test_void_pixels_are_removed() -> None:
    gt = np.zeros((1, 16, 16), dtype=bool)
    gt[:, 4:12, 4:12] = True
    pred = gt.copy()
    pred[:, 4:12, 12:14] = True  # extra pixels, all void
    void = np.zeros_like(gt)
    void[:, :, 12:] = True
    assert region_similarity(pred, gt, void).tolist() == [1.0]
    assert boundary_f_measure(pred, gt, void).tolist() == [1.0]
    assert region_similarity(pred, gt).tolist() == [64 / 80]


def test_input_kinds_dtypes_and_non_binary_values() -> None:
    gt = np.zeros((2, 16, 16), dtype=np.uint8)
    gt[:, 2:9, 3:12] = 1
    expected_j = region_similarity(gt.astype(bool), gt.astype(bool))
    for pred in (gt * 255, gt.astype(np.int64) * 2, gt * np.float32(0.3), gt.astype(bool)):
        assert region_similarity(pred, gt).tolist() == expected_j.tolist()
        assert boundary_f_measure(pred, gt).tolist() == [1.0, 1.0]
    out = region_similarity(torch.from_numpy(gt), torch.from_numpy(gt))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (2,)
    single = boundary_f_measure(gt[0], gt[0])
    assert isinstance(single, np.ndarray) and single.shape == ()


def test_shape_errors_name_both_shapes() -> None:
    pred, gt = np.zeros((3, 64, 64)), np.zeros((3, 64, 65))
    message = r"pred and gt must have the same shape, got pred \(3, 64, 64\) and gt \(3, 64, 65\)"
    for metric in (region_similarity, boundary_f_measure):
        with pytest.raises(ValueError, match=message):
            metric(pred, gt)
        with pytest.raises(ValueError, match=r"void \(64, 64\) and pred \(3, 64, 64\)"):
            metric(pred, pred, np.zeros((64, 64)))
        with pytest.raises(ValueError, match=r"pred must be \(T, H, W\) or \(H, W\), got \(64\)"):
            metric(np.zeros(64), np.zeros(64))
        with pytest.raises(TypeError, match="pred must be a numpy array or a torch.Tensor"):
            metric([[0]], [[0]])
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_sequence(pred, pred, protocol="unsupervised")
    with pytest.raises(ValueError, match="evaluates no frame of a sequence of 2 frames"):
        evaluate_sequence(pred[:2], pred[:2], protocol="semi-supervised")


# --- properties -------------------------------------------------------------------------------

masks_2d = st.tuples(st.integers(1, 24), st.integers(1, 24), st.integers(0, 2**32 - 1))


def _random_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.05, 0.95, size=2)
    return rng.random((height, width)) < density[0], rng.random((height, width)) < density[1]


@settings(max_examples=80, deadline=None)
@given(masks_2d)
def test_j_properties(case: tuple[int, int, int]) -> None:
    pred, gt = _random_pair(*case)
    j_value = float(region_similarity(pred, gt))
    assert 0.0 <= j_value <= 1.0
    assert j_value == float(region_similarity(gt, pred))
    assert float(region_similarity(pred, pred)) == 1.0
    assert j_value == ref.db_eval_iou(gt, pred)


@settings(max_examples=80, deadline=None)
@given(masks_2d, st.sampled_from([0.008, 0.05, 0.2, 1, 2, 3]), st.booleans())
def test_f_matches_reference(case: tuple[int, int, int], bound_th: float, use_void: bool) -> None:
    pred, gt = _random_pair(*case)
    void = np.random.default_rng(case[2] + 1).random(gt.shape) < 0.1 if use_void else None
    f_value = float(boundary_f_measure(pred, gt, void, bound_th=bound_th))
    assert f_value == ref.f_measure(pred, gt, void, bound_th=bound_th)
    assert 0.0 <= f_value <= 1.0
    if seg2bmap(pred).any():
        assert float(boundary_f_measure(pred, pred, bound_th=bound_th)) == 1.0


@settings(max_examples=40, deadline=None)
@given(masks_2d, st.sampled_from([1, 2, 4]))
def test_f_matches_skimage_dilation(case: tuple[int, int, int], radius: int) -> None:
    morphology = pytest.importorskip("skimage.morphology")
    pred, gt = _random_pair(*case)
    pred_b, gt_b = ref.seg2bmap(pred), ref.seg2bmap(gt)
    footprint = morphology.disk(radius)
    pred_matched = np.count_nonzero(pred_b & morphology.dilation(gt_b, footprint))
    gt_matched = np.count_nonzero(gt_b & morphology.dilation(pred_b, footprint))
    precision = pred_matched / pred_b.sum() if pred_b.any() else 1.0
    recall = gt_matched / gt_b.sum() if gt_b.any() else 1.0
    expected = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    assert float(boundary_f_measure(pred, gt, bound_th=radius)) == pytest.approx(
        expected, abs=1e-12
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(12, 30),
    st.integers(12, 30),
    st.integers(-3, 3),
    st.integers(-3, 3),
    st.booleans(),
)
def test_shift_within_tolerance_keeps_f_one(
    blob_h: int, blob_w: int, dy: int, dx: int, disk_blob: bool
) -> None:
    size = 48
    gt = np.zeros((size, size), dtype=bool)
    if disk_blob:
        yy, xx = np.mgrid[:size, :size]
        gt = (yy - 24) ** 2 / (blob_h / 2) ** 2 + (xx - 24) ** 2 / (blob_w / 2) ** 2 <= 1
    else:
        gt[8 : 8 + blob_h, 8 : 8 + blob_w] = True
    pred = np.roll(gt, (dy, dx), axis=(0, 1))
    radius = 3 if dy * dy + dx * dx <= 9 else 5  # a shift no longer than the radius
    assert float(boundary_f_measure(pred, gt, bound_th=radius)) == 1.0


# --- statistics -------------------------------------------------------------------------------


def test_sequence_statistics_hand_case() -> None:
    # T = 5: ids = round(linspace(1, 5, 5)) - 1 = 0..4, bins [0:2], [1:3], [2:4], [3:5]
    stats = sequence_statistics([1.0, 1.0, 0.5, 0.0, 0.0])
    assert stats == {"mean": 0.5, "recall": 0.4, "decay": 1.0}
    single = sequence_statistics(np.array([0.7]))
    assert single == {"mean": 0.7, "recall": 1.0, "decay": 0.0}
    assert all(np.isnan(v) for v in sequence_statistics([]).values())


@pytest.mark.parametrize("length", [1, 2, 3, 7, 50, 81, 255])
def test_sequence_statistics_match_official(length: int) -> None:
    values = np.random.default_rng(length).random(length)
    stats = sequence_statistics(torch.from_numpy(values))
    assert (stats["mean"], stats["recall"], stats["decay"]) == pytest.approx(
        ref.db_statistics(values), abs=1e-15
    )


# --- devices ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_cuda_agree() -> None:
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 97, 131, generator=generator) > 0.6
    gt = torch.rand(6, 97, 131, generator=generator) > 0.4
    void = torch.rand(6, 97, 131, generator=generator) > 0.9
    for metric in (region_similarity, boundary_f_measure):
        on_cpu = metric(pred, gt, void)
        on_gpu = metric(pred.cuda(), gt.cuda(), void.cuda())
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=0, atol=0)
    if davis_mini_path() is not None:
        gt_np, pred_np = load_davis_mini("blackswan")
        on_cpu = boundary_f_measure(pred_np, gt_np)
        on_gpu = boundary_f_measure(pred_np, gt_np, device="cuda")
        np.testing.assert_array_equal(on_gpu, on_cpu)
