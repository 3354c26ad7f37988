"""One generic tester for every preset, plus checks of each part alone."""

from __future__ import annotations

import pytest
import torch

import rvoslib
from rvoslib import RVOSModel, SegmentationModel, VOSModel, create_model, list_presets
from rvoslib.models import FusionModel, ModelInputs

PRESETS = list_presets()
HEAVY = {name for name in PRESETS if "tiny" not in name}


def _tokens(model: RVOSModel, batch: int, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (the seed presets' tokenizer would need a download)."""
    vocab = model.text_encoder.language_model.config.vocab_size
    ids = torch.randint(5, vocab, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length - 2 :] = 0  # padding in the first row
    return ids, mask


def _batch(model: RVOSModel, batch: int, frames: int, size: tuple[int, int]) -> dict:
    """A random batch for the model's task (text ids or a first-frame mask)."""
    torch.manual_seed(1)
    masks = (torch.rand(batch, frames, *size) > 0.7).float()
    masks[:, :, size[0] // 4 : size[0] // 2, size[1] // 4 : size[1] // 2] = 1.0
    values = {"frames": torch.randn(batch, frames, 3, *size), "masks": masks,
              "valid": torch.ones(batch, frames, dtype=torch.bool)}  # fmt: skip
    if "first_mask" in model.input_keys:
        values["first_mask"] = masks[:, 0]
    else:
        values["text_ids"], values["text_mask"] = _tokens(model, batch)
    return values


CASES = [(name, 1 if name in HEAVY else 2, 2, (64, 64)) for name in PRESETS] + [
    ("tiny", 1, 1, (97, 131)),
    ("seed-r18", 1, 1, (97, 131)),
]


@pytest.mark.parametrize(("name", "batch", "frames", "size"), CASES)
def test_every_preset_trains_and_round_trips(name, batch, frames, size, tmp_path) -> None:
    """The generic preset tester: forward, loss terms, backward (every trainable parameter gets
    a finite gradient), and save/load with identical predictions."""
    torch.manual_seed(0)
    model = create_model(name).train()
    values = _batch(model, batch, frames, size)
    outputs = model.forward_batch(values)
    logits = model.referred_logits(outputs)
    assert logits.shape == (batch, frames, 1, *size)
    assert torch.isfinite(logits).all()
    terms = model.losses(outputs, values)
    assert terms and all(v.ndim == 0 and torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad
    model.eval()
    expected = model.predict(values)
    model.save_pretrained(tmp_path / "saved")
    restored = SegmentationModel.from_pretrained(tmp_path / "saved").eval()
    assert type(restored) is type(model)
    if isinstance(model, RVOSModel):
        saved = model.config.replace(text_encoder={"tokenizer": None})
        assert restored.config.replace(text_encoder={"tokenizer": None}) == saved
    else:
        assert restored.config == model.config
    torch.testing.assert_close(restored.predict(values), expected, rtol=0, atol=0)


def test_tiny_needs_no_file_and_handles_any_sentence() -> None:
    model = create_model("tiny").eval()
    texts = ["the red circle moving left", "Ünïcödé sentence, with punctuation!?", "x"]
    tokens = model.tokenize(texts)
    assert tokens["input_ids"].shape[0] == 3
    with torch.no_grad():
        logits = model(torch.randn(3, 2, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"])
    assert logits.shape == (3, 2, 1, 64, 64)


def test_tiny_tokenizer_saved_and_restored(tmp_path) -> None:
    model = create_model("tiny")
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "rvos_hash_tokenizer.json").is_file()
    restored = RVOSModel.from_pretrained(tmp_path / "m")
    text = ["the green square at the top"]
    assert torch.equal(restored.tokenize(text)["input_ids"], model.tokenize(text)["input_ids"])


def test_save_pretrained_replaces_atomically(tmp_path) -> None:
    model = create_model("tiny")
    target = tmp_path / "m"
    model.save_pretrained(target)
    before = (target / "model.safetensors").read_bytes()

    class Boom(RuntimeError):
        pass

    def failing_save(directory):  # simulate a crash while writing tokenizer files
        raise Boom("disk full")

    model.text_encoder.save_tokenizer = failing_save
    with pytest.raises(Boom):
        model.save_pretrained(target)
    assert (target / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_cpu_bf16_autocast() -> None:
    model = create_model("tiny").eval()
    tokens = model.tokenize(["the blue triangle"])
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        logits = model(torch.randn(1, 2, 3, 64, 64), tokens["input_ids"], tokens["attention_mask"])
    assert logits.shape == (1, 2, 1, 64, 64)
    assert torch.isfinite(logits.float()).all()
    loss = rvoslib.RVOSLoss()(logits, torch.ones(1, 2, 64, 64))
    assert loss.dtype == torch.float32


def test_forward_with_precomputed_text_matches_forward() -> None:
    model = create_model("tiny").eval()
    tokens = model.tokenize(["the red circle", "a yellow star on the left"])
    video = torch.randn(2, 3, 3, 64, 64)
    with torch.no_grad():
        text = model.encode_text(tokens["input_ids"], tokens["attention_mask"])
        torch.testing.assert_close(
            model.forward_with_text(video, text),
            model(video, tokens["input_ids"], tokens["attention_mask"]),
        )


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.randn(3, 3, 97, 131), r"frames must be \(B, T, 3, H, W\), got \(3, 3, 97, 131\)"),
        (
            torch.randn(1, 2, 4, 64, 64),
            r"frames must be \(B, T, 3, H, W\), got \(1, 2, 4, 64, 64\)",
        ),
    ],
)
def test_forward_rejects_bad_frames(frames, message) -> None:
    model = create_model("tiny")
    tokens = model.tokenize(["a"])
    with pytest.raises(ValueError, match=message):
        model(frames, tokens["input_ids"], tokens["attention_mask"])


def test_forward_rejects_batch_mismatch_and_bad_text() -> None:
    model = create_model("tiny")
    tokens = model.tokenize(["a", "b"])
    video = torch.randn(1, 2, 3, 64, 64)
    with pytest.raises(
        ValueError, match=r"same batch size B, got frames \(1, 2, 3, 64, 64\) and text_ids \(2, 3\)"
    ):
        model(video, tokens["input_ids"], tokens["attention_mask"])
    ids = tokens["input_ids"][:1]
    with pytest.raises(
        ValueError, match=r"text_mask must have the shape of text_ids \(1, 3\), got \(1, 2\)"
    ):
        model(video, ids, torch.ones(1, 2))
    with pytest.raises(
        TypeError, match="text_ids must have an integer or bool dtype, got torch.float32"
    ):
        model(video, ids.float(), torch.ones(1, 3))
    with pytest.raises(TypeError, match="frames must have a floating dtype, got torch.uint8"):
        model(video.to(torch.uint8), ids, torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"texts\[1\] must be a non-empty string"):
        model.tokenize(["ok", "  "])


def test_create_model_errors() -> None:
    with pytest.raises(
        KeyError, match=f"unknown preset 'nope'; valid presets: {', '.join(list_presets())}"
    ):
        create_model("nope")
    with pytest.raises(ValueError, match=r"\['hiden_dim'\] not fields of FusionConfig"):
        create_model("tiny", hiden_dim=3)
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("tiny", pretrained=True)


def test_overrides_merge_or_replace_part_specs() -> None:
    model = create_model("tiny", fusion={"num_heads": 2}, temporal={"name": "identity"})
    assert model.fusion.attention.num_heads == 2
    assert model.config.fusion["mode"] == "tokens"  # the rest of the preset's spec is kept
    assert model.config.temporal == {"name": "identity"}
    assert type(model.config).from_dict(model.config.to_dict()) == model.config


def test_from_pretrained_names_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        RVOSModel.from_pretrained(tmp_path)


def test_parts_must_fit() -> None:
    from rvoslib.models import CrossModalFusion, SegmentationHead, TemporalModule, VisualBackbone

    backbone = VisualBackbone("tinycnn", out_strides=(32,))
    text = create_model("tiny").text_encoder
    with pytest.raises(ValueError, match="backbone gives 64 channels but fusion expects 10"):
        FusionModel(
            backbone=backbone,
            text_encoder=text,
            fusion=CrossModalFusion(10, text.out_dim, hidden_dim=8, num_heads=2),
            temporal=TemporalModule(8),
            head=SegmentationHead(8),
        )
    with pytest.raises(ValueError, match="fusion gives 8 channels but head expects 16"):
        FusionModel(
            backbone=backbone,
            text_encoder=text,
            fusion=CrossModalFusion(64, text.out_dim, hidden_dim=8, num_heads=2),
            temporal=TemporalModule(8),
            head=SegmentationHead(16),
        )


def test_composition_by_injection_saves_and_restores(tmp_path) -> None:
    from rvoslib.models import CrossModalFusion, MultiScaleSegmentationHead, VisualBackbone

    backbone = VisualBackbone("tinycnn", out_strides=(8, 16, 32), channels=(8, 16, 32, 64))
    text = create_model("tiny").text_encoder
    model = FusionModel(
        backbone=backbone,
        text_encoder=text,
        fusion=CrossModalFusion(
            backbone.out_channels[-1], text.out_dim, hidden_dim=16, num_heads=2
        ),
        temporal=None,
        head=MultiScaleSegmentationHead(16, backbone.out_channels[-2::-1], text.out_dim, 8),
    ).eval()
    tokens = model.tokenize(["the left one"])
    frames = torch.randn(1, 2, 3, 64, 96)
    with torch.no_grad():
        logits = model(frames, tokens["input_ids"])
    assert logits.shape == (1, 2, 1, 64, 96)
    model.save_pretrained(tmp_path / "hand-built")
    restored = RVOSModel.from_pretrained(tmp_path / "hand-built").eval()
    assert restored.config.temporal == {"name": "identity"}
    with torch.no_grad():
        torch.testing.assert_close(restored(frames, tokens["input_ids"]), logits, rtol=0, atol=0)


def test_rvos_model_is_an_abstract_base_without_redirection() -> None:
    parts = create_model("tiny")
    with pytest.raises(TypeError):
        RVOSModel(backbone=parts.backbone)  # 0.1's RVOSModel(backbone=...) no longer builds
    assert issubclass(FusionModel, RVOSModel) and issubclass(RVOSModel, SegmentationModel)


def test_inputs_declare_what_the_model_reads() -> None:
    text_model, mask_model = create_model("tiny"), create_model("s2s-tiny")
    assert text_model.inputs == ModelInputs(
        "text", ("frames", "text_ids", "text_mask"), text_model.text_encoder.tokenizer, 16
    )
    assert mask_model.inputs == ModelInputs("first_mask", ("frames", "first_mask"))
    assert (text_model.task, mask_model.task) == ("rvos", "vos")
    assert isinstance(mask_model, VOSModel) and not hasattr(mask_model, "tokenize")
    import pickle

    tokenizer = pickle.loads(pickle.dumps(text_model.inputs.tokenizer))
    assert tokenizer(["a red circle"], max_length=16, padding=True, truncation=True,
                     return_tensors="pt")["input_ids"].shape[0] == 1  # fmt: skip


def test_check_batch_says_which_input_the_model_takes() -> None:
    text_model, mask_model = create_model("tiny"), create_model("s2s-tiny")
    frames = torch.randn(1, 2, 3, 32, 32)
    tokens = text_model.tokenize(["the red circle"])
    text_batch = {"frames": frames, "text_ids": tokens["input_ids"]}
    mask_batch = {"frames": frames, "first_mask": torch.ones(1, 32, 32)}
    text_model.check_batch(text_batch)
    mask_model.check_batch(mask_batch)
    with pytest.raises(
        ValueError,
        match=(
            r"Seq2SeqModel \(architecture 'seq2seq'\) is a VOS model: it takes the first frame's "
            r"mask, first_mask \(B, H, W\).*not text; the batch lacks \['first_mask'\]"
        ),
    ):
        mask_model.forward_batch(text_batch)
    with pytest.raises(
        ValueError,
        match=r"is a referring \(RVOS\) model: it takes text, "
        r"text_ids .*not a first-frame mask; the batch lacks \['text_ids'\]",
    ):
        text_model.predict(mask_batch)


def test_candidates_default_is_the_referred_mask_with_score_one() -> None:
    model = create_model("tiny").eval()
    tokens = model.tokenize(["the red circle"])
    batch = {"frames": torch.randn(1, 2, 3, 32, 32), "text_ids": tokens["input_ids"]}
    with torch.no_grad():
        outputs = model.forward_batch(batch)
    logits, scores = model.candidates(outputs)
    assert torch.equal(logits, outputs["logits"]) and logits.shape == (1, 2, 1, 32, 32)
    assert torch.equal(scores, torch.ones(1, 2, 1))


def test_kind_specific_loading_names_the_other_kind(tmp_path) -> None:
    create_model("s2s-tiny").save_pretrained(tmp_path / "vos")
    create_model("tiny").save_pretrained(tmp_path / "rvos")
    with pytest.raises(ValueError, match="RVOSModel cannot load .*Seq2SeqModel, a VOS model"):
        RVOSModel.from_pretrained(tmp_path / "vos")
    with pytest.raises(ValueError, match="VOSModel cannot load .*FusionModel, a referring model"):
        VOSModel.from_pretrained(tmp_path / "rvos")
    assert isinstance(VOSModel.from_pretrained(tmp_path / "vos"), VOSModel)
    with pytest.raises(ValueError, match="FusionModel cannot load config of architecture "
                       "'motion_fusion'"):  # fmt: skip
        FusionModel.from_config(rvoslib.get_preset_config("tiny-motion"))


def test_presets_registry_lists_filters_and_describes() -> None:
    from rvoslib.models import PRESETS, register_preset

    assert list_presets("mttr*") == ["mttr-swin-t", "mttr-swin-t-rvoslib", "mttr-tiny"]
    assert list_presets() == PRESETS.names()
    assert "quickstart" in PRESETS.describe("tiny-motion")
    register_preset("test-tiny", lambda: rvoslib.get_preset_config("tiny"), "a copy")
    try:
        assert list_presets("test-*") == ["test-tiny"]
        with pytest.raises(ValueError, match="preset 'test-tiny' already exists"):
            register_preset("test-tiny", lambda: rvoslib.get_preset_config("tiny"))
    finally:
        PRESETS.unregister("test-tiny")
    with pytest.raises(KeyError, match="unknown preset 'nope'"):
        PRESETS.describe("nope")


def test_saved_files_have_normal_permissions(tmp_path) -> None:
    import os
    import stat

    create_model("tiny").save_pretrained(tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "m").st_mode) == 0o777 & ~umask
    from rvoslib._io import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o666 & ~umask


def test_forward_input_checks_and_dtypes() -> None:
    model = create_model("tiny").eval()
    tokens = model.tokenize(["the red circle"])
    frames = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        expected = model(frames, tokens["input_ids"])
        for dtype in (torch.float64, torch.float16):  # converted to the parameters' dtype
            assert model(frames.to(dtype), tokens["input_ids"]).dtype == torch.float32
        torch.testing.assert_close(model(frames.double(), tokens["input_ids"]), expected)
    with pytest.raises(ValueError, match=r"empty input: frames \(1, 0, 3, 32, 32\)"):
        model(frames[:, :0], tokens["input_ids"])
    with pytest.raises(
        ValueError, match=r"text_ids must be in \[0, 4096\).*got ids from 0 to 5000"
    ):
        model(frames, torch.tensor([[0, 5000]]))
