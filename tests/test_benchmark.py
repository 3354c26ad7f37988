"""Benchmarks: the CPU quick run (as in CI), row contents, and GPU checks of the fast path."""

from __future__ import annotations

import json

import pytest
import torch

from rvoslib import RVOSLoss, create_model
from rvoslib.benchmark import MODES, benchmark_mode, count_train_step_flops
from rvoslib.cli import main
from rvoslib.training.fast import apply_fast_path

REQUIRED = {
    "mode",
    "forward_ms",
    "backward_ms",
    "train_step_ms",
    "infer_ms",
    "peak_mem_mb",
    "tflops",
}


def test_rvos_bench_cpu_quick_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row["mode"] for row in rows] == list(MODES)
    for row in rows:
        assert set(row) >= REQUIRED
        assert row["train_step_ms"] > 0 and row["infer_ms"] > 0 and row["flops_per_step"] > 0
        assert row["torch_version"] == torch.__version__ and row["command"].startswith("rvos bench")
        assert row["device"].startswith("cpu")
    assert "fast vs reference" in capsys.readouterr().out


def test_flop_count_scales_with_frames() -> None:
    from rvoslib.benchmark import benchmark_batch

    model = create_model("tiny")
    counts = [
        count_train_step_flops(model, benchmark_batch(model, 1, frames, 64, 5, torch.device("cpu")))
        for frames in (1, 2)
    ]
    assert counts[1] > 1.8 * counts[0]


def test_unknown_mode_and_device_errors(capsys) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        benchmark_mode("turbo")
    assert main(["bench", "--modes", "fast,turbo", "--device", "cpu", "--quick"]) == 2
    assert "unknown modes ['turbo']" in capsys.readouterr().err


def test_fast_path_layouts_keep_cpu_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    tokens = model.tokenize(["the red circle"])
    video = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        expected = model(video, tokens["input_ids"], tokens["attention_mask"])
        apply_fast_path(model)
        assert model.backbone.trunk.stem[0][0].weight.is_contiguous(
            memory_format=torch.channels_last
        )
        assert model.temporal.body[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
        actual = model(video, tokens["input_ids"], tokens["attention_mask"])
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@gpu
@pytest.mark.gpu
def test_fast_matches_fp32_on_gpu() -> None:
    torch.manual_seed(0)
    reference = create_model("seed-r18").cuda().eval()
    fast = create_model("seed-r18").cuda().eval()
    fast.load_state_dict(reference.state_dict())
    apply_fast_path(fast)
    video = torch.randn(2, 4, 3, 128, 128, device="cuda")
    ids = torch.randint(1000, 2000, (2, 12), device="cuda")
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = reference(video, ids, mask).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            actual = fast(video.contiguous(memory_format=torch.channels_last_3d), ids, mask).float()
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= 0.05 * scale
    assert ((actual > 0) == (expected > 0)).float().mean() > 0.98


@gpu
@pytest.mark.gpu
def test_fast_training_follows_the_fp32_loss_curve() -> None:
    curves = []
    for fast in (False, True):
        torch.manual_seed(0)
        model = create_model("seed-r18").cuda()
        if fast:
            apply_fast_path(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fast)
        generator = torch.Generator().manual_seed(1)
        video = torch.randn(2, 4, 3, 128, 128, generator=generator).cuda()
        ids = torch.randint(1000, 2000, (2, 12), generator=generator).cuda()
        masks = (torch.rand(2, 4, 128, 128, generator=generator) > 0.7).float().cuda()
        losses = []
        for _ in range(8):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
                loss = RVOSLoss()(model(video, ids, torch.ones_like(ids)), masks)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves.append(losses)
    for fp32_loss, fast_loss in zip(*curves):
        assert abs(fp32_loss - fast_loss) <= 0.03 * fp32_loss + 1e-3
    assert curves[1][-1] < curves[1][0]
