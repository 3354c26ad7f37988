"""Build SOC's original model at reduced dims and save a converter fixture.

Runs the released SOC code (RobertLuo1/NeurIPS2023_SOC, commit 76b2915) on the CPU with random
weights: a tiny Video-Swin (window ``(2, 3, 3)``), a small RoBERTa built from a config
(``from_pretrained`` patched), the pure-PyTorch multi-scale deformable attention instead of
the CUDA op, eval mode. Weights are the original initialisation plus Gaussian noise (std 0.02,
so that no weight is zero), the controller's last layer halved, rounded to float16 (stored as
float16 to keep the fixture small; the model runs them in float32, so the stored values are
exactly the ones used).

Saves into ``--out``:

* ``checkpoint.pth``: ``{"model_state_dict": ...}`` (SOC's checkpoint format; with the
  ``text_encoder.embeddings.position_ids`` buffer that transformers 4.x saved);
* ``inputs.pt``: ``frames (1, T, 3, H, W)`` (one clip: SOC's video-query module mixes the clips
  of a batch), ``input_ids``/``attention_mask (1, L)``;
* ``expected.pt``: what the released inference reads (``pred_cls (T, N, 1)``,
  ``pred_masks (T, N, H/4, W/4)``, ``pred_boxes (T, N, 4)``: decoder layer 0's heads on
  ``queries[0] + video_queries[-1]``, as the released forward zips lists of different lengths),
  ``chosen_query`` and ``logits (1, T, 1, H, W)`` (the chosen query's masks upsampled to the
  frame size, bilinear).

Usage: ``python tools/originals/make_soc_fixture.py --original PATH --out DIR [--published]``.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import torch

SMALL = {
    "swin": {"embed_dim": 8, "depths": [2, 2, 2, 2], "num_heads": [1, 1, 2, 2],
             "window_size": (2, 3, 3)},
    "roberta": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1,
                "intermediate_size": 96, "vocab_size": 64, "max_position_embeddings": 34},
    "d_model": 128, "ffn": 32, "enc": 1, "dec": 2, "heads": 8, "queries": 5,
    "voc": {"enc_layers": 1, "dec_layers": 1, "nheads": 8, "dim_feedforward": 32},
    "frames": 3, "size": (64, 96),
}  # fmt: skip
PUBLISHED = {
    "swin": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "roberta": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "vocab_size": 50265, "max_position_embeddings": 514},
    "d_model": 256, "ffn": 2048, "enc": 3, "dec": 3, "heads": 8, "queries": 20,
    "voc": {"enc_layers": 3, "dec_layers": 3, "nheads": 8, "dim_feedforward": 2048},
    "frames": 4, "size": (128, 160),
}  # fmt: skip


def _patch_original(original: Path, dims: dict, input_ids: torch.Tensor) -> None:
    """Make the original importable offline: no CUDA op, RoBERTa from a config."""
    sys.path.insert(0, str(original))
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
    import transformers
    from models.ops.functions import ms_deform_attn_func as func

    def deform(value, shapes, _start, locations, weights, _step):
        return func.ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    func.MSDeformAttnFunction.apply = staticmethod(deform)
    config = transformers.RobertaConfig(
        **dims["roberta"], type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5,
    )  # fmt: skip

    class Tokenizer:
        def batch_encode_plus(self, texts, **_):
            ids = input_ids.expand(len(texts), -1)
            return transformers.BatchEncoding(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            )

    transformers.RobertaModel.from_pretrained = classmethod(lambda cls, *a, **k: cls(config))
    transformers.RobertaTokenizerFast.from_pretrained = classmethod(
        lambda cls, *a, **k: Tokenizer()
    )


def _config(dims: dict) -> types.SimpleNamespace:
    from models import video_swin_transformer

    video_swin_transformer.configs["video-swin-t"].update(dims["swin"])
    d_model = dims["d_model"]
    return types.SimpleNamespace(
        backbone="video-swin-t", use_checkpoint=False, backbone_pretrained_path=None,
        DeformTransformer={"enc_layers": dims["enc"], "dec_layers": dims["dec"],
                           "dim_feedforward": dims["ffn"], "d_model": d_model, "dropout": 0.1,
                           "nheads": dims["heads"], "num_queries": dims["queries"],
                           "num_feature_levels": 4, "dec_n_points": 4, "enc_n_points": 4,
                           "two_stage": False},
        num_classes=1, rel_coord=True, with_box_refine=True, text_encoder_type="roberta-base",
        freeze_text_encoder=True,
        VOC={"input_dim": d_model, "window_size": 0, "num_frame_queries": dims["queries"],
             "num_frames": dims["frames"], "num_queries": dims["queries"], **dims["voc"]},
        mask_kernels_dim=8, controller_layers=3, dynamic_mask_channels=8, vl_loss=True,
        aux_loss=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="SOC's source folder")
    parser.add_argument("--out", type=Path, required=True, help="fixture folder to write")
    parser.add_argument("--published", action="store_true", help="published dims (checks only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dims = PUBLISHED if args.published else SMALL
    generator = torch.Generator().manual_seed(args.seed)
    vocab = dims["roberta"]["vocab_size"]
    input_ids = torch.tensor([[0, *torch.randint(3, vocab, (6,), generator=generator), 2]])
    _patch_original(args.original.resolve(), dims, input_ids)
    from models.soc import SOC

    torch.manual_seed(args.seed)
    model = SOC(_config(dims)).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator).mul_(0.02))
        # smaller dynamic mask kernels: mask logits of a few units, as a trained model's (with
        # logits in the hundreds float32 rounding alone moves them by ~1e-3)
        model.controller.layers[-1].weight.mul_(0.5)
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    frames = torch.randn(1, dims["frames"], 3, *dims["size"], generator=generator)
    frames = frames.half().float()
    from misc import nested_tensor_from_videos_list

    samples = nested_tensor_from_videos_list([frames[0]])
    size = torch.as_tensor(dims["size"])
    targets = [[{"size": size}] for _ in range(dims["frames"])]
    with torch.no_grad():
        out = model(samples, None, ["unused"], targets)
    scores = out["pred_cls"][:, 0].sigmoid().mean(0).max(-1)[0]  # (N,)
    chosen = int(scores.argmax())
    masks = out["pred_masks"][:, 0]  # (T, N, h, w)
    logits = torch.nn.functional.interpolate(
        masks[:, chosen][None], size=dims["size"], mode="bilinear", align_corners=False
    )  # (1, T, H, W)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    positions = dims["roberta"]["max_position_embeddings"]
    state["text_encoder.embeddings.position_ids"] = torch.arange(positions)[None]
    if args.published:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state_dict": state}, args.out / "checkpoint.pth")
    torch.save(
        {"frames": frames, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)},
        args.out / "inputs.pt",
    )
    torch.save(
        {"pred_cls": out["pred_cls"][:, 0], "pred_masks": masks,
         "pred_boxes": out["pred_boxes"][:, 0], "chosen_query": chosen,
         "logits": logits.unsqueeze(2)},
        args.out / "expected.pt",
    )  # fmt: skip
    print(f"saved {len(state)} tensors; masks {tuple(masks.shape)}; chosen query {chosen}")


if __name__ == "__main__":
    main()
