"""SOC: bidirectional fusion, video object cluster, video-text contrastive loss, presets."""

from __future__ import annotations

import pytest
import torch

from rvoslib.losses import query_targets
from rvoslib.losses.matching import prepare_targets
from rvoslib.models.architectures.soc import SOCConfig, SOCModel
from rvoslib.models.base import RVOSModel
from rvoslib.models.presets_query_deformable import soc_tiny


def _parts(config) -> dict:
    """The parts of ``config``, built in its ``parts`` order as the one build path does."""
    built: dict = {}
    for name, part in config.part_slots().items():
        built[name] = part.build(getattr(config, name), built, config, False)
    return built


def _batch(model: RVOSModel, batch: int = 2, frames: int = 3, size: int = 64) -> dict:
    torch.manual_seed(3)
    tokens = model.tokenize(["the square moving left", "the one that moves up quickly"][:batch])
    masks = torch.zeros(batch, frames, size, size)
    masks[:, :, 10:30, 20:40] = 1
    masks[-1, 0] = 0  # absent in one frame
    return {
        "frames": torch.randn(batch, frames, 3, size, size),
        "text_ids": tokens["input_ids"],
        "text_mask": tokens["attention_mask"],
        "masks": masks,
        "valid": torch.ones(batch, frames, dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def model() -> SOCModel:
    torch.manual_seed(0)
    return RVOSModel.from_config(soc_tiny())


def test_forward_backward_and_losses(model: SOCModel) -> None:
    model.train().zero_grad()
    batch = _batch(model)
    outputs = model.forward_batch(batch)
    layers, queries, width = 2, 5, 64
    assert outputs["is_referred"].shape == (layers, 2, 3, queries, 1)
    assert outputs["boxes"].shape == (layers, 2, 3, queries, 4)
    assert outputs["masks"].shape == (layers, 2, 3, queries, 16, 16)
    assert outputs["video_queries"].shape == (layers, 2, queries, width)
    assert outputs["text_vector"].shape == (2, width)
    assert outputs["logits"].shape == (2, 3, 1, 64, 64)
    losses = model.losses(outputs, batch)
    assert sorted(losses) == ["box_l1", "class", "contrastive", "dice", "giou", "mask_focal"]
    assert all(value.ndim == 0 and value.isfinite() for value in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad[:5]}"


def test_contrastive_term_from_its_definition(model: SOCModel) -> None:
    """Per layer: the query the matcher assigns to the referred target is the positive; loss =
    mean over clips of -log softmax_n((v_n . t) / C)[positive], summed over layers."""
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        losses = model.losses(outputs, batch)
    targets = prepare_targets(query_targets(batch))
    matches = model.criterion.matcher(outputs, targets)  # [layer][clip] = (queries, targets)
    video, text = outputs["video_queries"].double(), outputs["text_vector"].double()
    expected = 0.0
    for layer, per_clip in enumerate(matches):
        clip_losses = []
        for clip, (query_index, target_index) in enumerate(per_clip):
            assert target_index.tolist() == [0]
            positive = int(query_index[0])
            scores = [float(video[layer, clip, n] @ text[clip]) / video.shape[-1] for n in range(5)]
            log_sum = torch.logsumexp(torch.tensor(scores, dtype=torch.float64), 0)
            clip_losses.append(float(log_sum) - scores[positive])
        expected += sum(clip_losses) / len(clip_losses)
    assert losses["contrastive"].item() == pytest.approx(expected, rel=1e-5)


def test_text_vector_is_the_mean_of_the_fused_text(model: SOCModel) -> None:
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        text = model.encode_text(batch["text_ids"], batch["text_mask"])
        levels = model.backbone(batch["frames"])[1:]
        fused = model.transformer(levels, text)["text"]
        outputs = model.forward_outputs(batch["frames"], text)
    for clip in range(2):
        real = batch["text_mask"][clip].bool()
        expected = fused.tokens[clip, real].mean(0)
        torch.testing.assert_close(outputs["text_vector"][clip], expected)


def test_heads_read_frame_plus_video_queries(model: SOCModel) -> None:
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        text = model.encode_text(batch["text_ids"], batch["text_mask"])
        decoded = model.transformer(model.backbone(batch["frames"])[1:], text)
        cluster = model.voc(decoded["queries"], decoded["text"].sentence)
        outputs = model.forward_outputs(batch["frames"], text)
    summed = decoded["queries"] + cluster.video_queries[:, :, None]
    torch.testing.assert_close(cluster.frame_queries, summed)
    scores = torch.stack([head(q) for head, q in zip(model.class_heads, summed)])
    torch.testing.assert_close(outputs["is_referred"], scores)
    boxes = model.transformer.predict_boxes(
        summed, decoded["initial_reference"], decoded["references"]
    )
    torch.testing.assert_close(outputs["boxes"], boxes)


def test_voc_ignores_frame_order_and_reads_the_sentence(model: SOCModel) -> None:
    model.eval()
    torch.manual_seed(1)
    frame_queries, sentence = torch.randn(2, 4, 5, 64), torch.randn(2, 64)
    with torch.no_grad():
        video = model.voc(frame_queries, sentence).video_queries
        permuted = model.voc(frame_queries[:, [3, 1, 0, 2]], sentence).video_queries
        other = model.voc(frame_queries, torch.randn(2, 64)).video_queries
    torch.testing.assert_close(permuted, video, atol=1e-5, rtol=1e-4)
    assert (other - video).abs().max() > 1e-2


def test_soc_tiny_knows_the_order_of_frames(model: SOCModel) -> None:
    """VOC has no temporal position: in soc-tiny the backbone's temporal shift carries the
    order of frames, so reversing a clip does not just reverse the outputs."""
    model.eval()
    batch = _batch(model, batch=1)
    with torch.no_grad():
        outputs = model.forward_batch(batch)
        reversed_ = model.forward_batch({**batch, "frames": batch["frames"].flip(1)})
    assert not torch.allclose(reversed_["masks"].flip(2), outputs["masks"], atol=1e-4)
    plain = SOCModel.from_config(soc_tiny().replace(backbone={"temporal_shift_stages": []})).eval()
    with torch.no_grad():
        outputs = plain.forward_batch(batch)
        reversed_ = plain.forward_batch({**batch, "frames": batch["frames"].flip(1)})
    torch.testing.assert_close(reversed_["masks"].flip(2), outputs["masks"], atol=1e-4, rtol=1e-4)


def test_clips_of_a_batch_are_independent(model: SOCModel) -> None:
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        both = model.forward_batch(batch)
        first = model.forward_batch({k: v[:1] for k, v in batch.items()})
    for key in ("is_referred", "masks", "boxes", "video_queries"):
        torch.testing.assert_close(both[key][:, :1], first[key], atol=1e-5, rtol=1e-4)


def test_save_and_load_round_trip(model: SOCModel, tmp_path) -> None:
    model.eval()
    model.save_pretrained(tmp_path / "soc")
    loaded = RVOSModel.from_pretrained(tmp_path / "soc").eval()
    assert isinstance(loaded, SOCModel)
    for field in ("transformer", "pixel_decoder", "voc", "criterion"):
        assert getattr(loaded.config, field) == getattr(model.config, field)
    batch = _batch(model)
    with torch.no_grad():
        expected = model.forward_batch(batch)
        actual = loaded.forward_batch(batch)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_config_and_options() -> None:
    config = soc_tiny()
    assert SOCConfig.from_dict(config.to_dict()) == config
    assert SOCConfig().transformer == {"name": "deformable_soc"}
    criterion = {**config.criterion, "contrastive_weight": 0.0}
    no_contrastive = SOCModel.from_config(config.replace(criterion=criterion))
    batch = _batch(no_contrastive, batch=1, frames=2)
    losses = no_contrastive.losses(no_contrastive.forward_batch(batch), batch)
    assert "contrastive" not in losses
    parts = _parts(config)
    with pytest.raises(ValueError, match=r"\['dim'\] are set by the builder"):
        SOCModel(**parts, voc={"name": "voc", "dim": 32})
    with pytest.raises(
        ValueError,
        match=r"unknown keyword\(s\) \['layers'\]; it accepts: "
        r"num_encoder_layers, num_decoder_layers, num_heads, ffn_dim, dropout",
    ):
        SOCModel(**parts, voc={"name": "voc", "layers": 2})
    with pytest.raises(KeyError, match="unknown video object cluster 'vocx'.*voc"):
        SOCModel(**parts, voc={"name": "vocx"})
    with pytest.raises(ValueError, match="contrastive_weight must be a number >= 0, got -1"):
        SOCModel.from_config(
            config.replace(criterion={**config.criterion, "contrastive_weight": -1})
        )
