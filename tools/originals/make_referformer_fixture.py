"""Record the original ReferFormer's forward on fixed inputs, with its checkpoint.

Builds the original model (``models/referformer.py``'s ``build`` with the ``opts.py`` defaults
and the flags of the released scripts: ``--with_box_refine --binary --freeze_text_encoder``) on
the CPU in eval mode, with random weights, and saves::

    OUT/checkpoint.pth   {"model": state_dict}, the layout of the released checkpoints (with the
                         transformer.decoder.bbox_embed aliases and the RoBERTa position_ids
                         buffer they hold)
    OUT/io.pt            inputs (frames, input_ids, attention_mask, captions' sizes) and the
                         original outputs: every decoder layer's pred_logits, pred_boxes,
                         pred_masks, the query chosen as inference_ytvos.py chooses it, and
                         the chosen query's masks upsampled to the input size

Everything loads with ``torch.load(weights_only=True)``. What is replaced, nothing else:

* the CUDA deformable-attention op -> the original's own ``ms_deform_attn_core_pytorch``;
* ``RobertaModel.from_pretrained`` -> ``RobertaModel(RobertaConfig(...))`` (random weights),
  ``RobertaTokenizerFast.from_pretrained`` -> a stub returning fixed token ids;
* ``fvcore``'s ``c2_xavier_fill`` (an initialiser; all weights are randomised afterwards);
* ``--size reduced``: the Video-Swin-T config, the RoBERTa width and the ``FeatureResizer``'s
  input width (hard-coded 768 in the original) are reduced; the Video-Swin's
  ``relative_position_index`` buffers (1.2 MB each at window (8, 7, 7)) are left out of the
  saved checkpoint (converters recompute them).

Usage::

    python tools/originals/make_referformer_fixture.py --original /path/to/ReferFormer \
        --out tests/data/originals/referformer --size reduced
    python tools/originals/make_referformer_fixture.py --original /path/to/ReferFormer \
        --out /tmp/rf-r50 --size published --backbone resnet50 --controller-scale 0.3

(At the published sizes, random weights give mask logits in the thousands; a controller scale of
0.3 brings them to a trained model's range, about +-40.)
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

REDUCED_SWIN = {
    "embed_dim": 8,
    "depths": [1, 1, 2, 1],
    "num_heads": [1, 1, 2, 2],
}
REDUCED_TEXT = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
                "intermediate_size": 64, "vocab_size": 64,
                "max_position_embeddings": 34}  # fmt: skip
PUBLISHED_TEXT = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "vocab_size": 50265,
                  "max_position_embeddings": 514}  # fmt: skip
REDUCED_MODEL = {"hidden_dim": 32, "nheads": 8, "dim_feedforward": 64, "enc_layers": 2,
                 "dec_layers": 2, "mask_dim": 8}  # fmt: skip


def _stub_modules(root: Path) -> None:
    """Make the original importable on a CPU without fvcore or the compiled op."""
    sys.path.insert(0, str(root))
    fvcore = types.ModuleType("fvcore")
    fvcore_nn = types.ModuleType("fvcore.nn")
    weight_init = types.ModuleType("fvcore.nn.weight_init")

    def c2_xavier_fill(module: nn.Module) -> None:
        nn.init.kaiming_uniform_(module.weight, a=1)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

    weight_init.c2_xavier_fill = c2_xavier_fill
    fvcore_nn.weight_init = weight_init
    fvcore.nn = fvcore_nn
    sys.modules.update({"fvcore": fvcore, "fvcore.nn": fvcore_nn,
                        "fvcore.nn.weight_init": weight_init})  # fmt: skip
    op = types.ModuleType("MultiScaleDeformableAttention")
    sys.modules["MultiScaleDeformableAttention"] = op
    from models.ops.functions.ms_deform_attn_func import ms_deform_attn_core_pytorch

    op.ms_deform_attn_forward = lambda value, shapes, starts, locations, weights, step: (
        ms_deform_attn_core_pytorch(value, shapes, locations, weights)
    )


class _Tokenizer:
    """Returns the fixed token ids whatever the captions say."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self.input_ids, self.attention_mask = input_ids, attention_mask

    def batch_encode_plus(self, captions: list[str], **kwargs: Any) -> Any:
        from transformers import BatchEncoding

        return BatchEncoding({"input_ids": self.input_ids, "attention_mask": self.attention_mask})


def _args(size: str, backbone: str) -> argparse.Namespace:
    from opts import get_args_parser

    args = get_args_parser().parse_args([])
    args.with_box_refine, args.binary, args.freeze_text_encoder = True, True, True
    args.masks, args.device, args.backbone = True, "cpu", backbone
    if size == "reduced":
        for name, value in REDUCED_MODEL.items():
            setattr(args, name, value)
    return args


def _inputs(text: dict[str, int], generator: torch.Generator, size: str) -> dict[str, Any]:
    batch, frames = 2, 3
    height, width = (64, 96) if size == "reduced" else (224, 320)
    lengths = [7, 4]
    input_ids = torch.ones(batch, max(lengths), dtype=torch.long)  # RoBERTa's pad id is 1
    attention_mask = torch.zeros(batch, max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        words = torch.randint(3, text["vocab_size"], (length - 2,), generator=generator)
        input_ids[row, :length] = torch.cat([torch.tensor([0]), words, torch.tensor([2])])
        attention_mask[row, :length] = 1
    video = torch.randn(batch, frames, 3, height, width, generator=generator)
    return {"frames": video, "input_ids": input_ids, "attention_mask": attention_mask}


def _randomise(model: nn.Module, generator: torch.Generator) -> None:
    """Perturb every weight (zero-initialised heads included) so that no path is trivial."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("text_encoder."):
                scale = 0.02
            elif name.startswith("class_embed."):  # clear margins between the queries' scores
                scale = 0.5
            elif parameter.dim() == 1 and "norm" in name:
                scale = 0.1
            else:
                scale = 0.05
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5, generator=generator)
            elif name.endswith("running_mean"):
                buffer.normal_(0, 0.1, generator=generator)


def build_and_run(
    root: Path, size: str, backbone: str, seed: int, controller_scale: float = 1.0
) -> dict[str, Any]:
    """Build the original model, run it and return what :func:`main` saves."""
    _stub_modules(root)
    import models.referformer as referformer
    import models.video_swin_transformer as video_swin
    import transformers

    generator = torch.Generator().manual_seed(seed)
    text = REDUCED_TEXT if size == "reduced" else PUBLISHED_TEXT
    if size == "reduced":
        for config in video_swin.configs.values():
            config.update(REDUCED_SWIN)
    inputs = _inputs(text, generator, size)
    roberta = transformers.RobertaConfig(
        **text, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5,
    )  # fmt: skip
    tokenizer = _Tokenizer(inputs["input_ids"], inputs["attention_mask"])
    referformer.RobertaTokenizerFast.from_pretrained = staticmethod(lambda *a, **k: tokenizer)
    referformer.RobertaModel.from_pretrained = staticmethod(
        lambda *a, **k: transformers.RobertaModel(roberta)
    )
    import models.backbone as resnet_backbone

    resnet_backbone.is_main_process = lambda: False  # never download ImageNet weights
    torch.manual_seed(seed)
    model, _, _ = referformer.build(_args(size, backbone))
    if size == "reduced":  # the original hard-codes RoBERTa-base's 768 channels here
        model.resizer = referformer.FeatureResizer(text["hidden_size"], model.hidden_dim, 0.1)
    _randomise(model, generator)
    with torch.no_grad():  # smaller dynamic kernels: mask logits of a trained model's range
        model.controller.layers[-1].weight.mul_(controller_scale)
        model.controller.layers[-1].bias.mul_(controller_scale)
    model.eval()
    batch, _, _, height, width = inputs["frames"].shape
    targets = [{"size": torch.as_tensor([height, width])} for _ in range(batch)]
    with torch.no_grad():
        outputs = model(list(inputs["frames"]), ["caption"] * batch, targets)
    layers = [*outputs["aux_outputs"], outputs]
    logits = torch.stack([layer["pred_logits"] for layer in layers])  # (Ly, B, T, N, 1)
    boxes = torch.stack([layer["pred_boxes"] for layer in layers])
    masks = torch.stack([layer["pred_masks"] for layer in layers])  # (Ly, B, T, N, h, w)
    scores = outputs["pred_logits"].sigmoid().mean(1).max(-1).values  # (B, N), as inference
    chosen = scores.argmax(-1)
    top2 = scores.topk(2, -1).values
    picked = masks[-1][torch.arange(batch), :, chosen]  # (B, T, h, w)
    upsampled = nn.functional.interpolate(
        picked, size=(height, width), mode="bilinear", align_corners=False
    )
    state = dict(model.state_dict())
    state.setdefault(
        "text_encoder.embeddings.position_ids", torch.arange(text["max_position_embeddings"])[None]
    )
    if size == "reduced":
        state = {k: v for k, v in state.items() if not k.endswith("relative_position_index")}
    io = {
        **inputs,
        "pred_logits": logits,
        "pred_boxes": boxes,
        "pred_masks": masks,
        "chosen_query": chosen,
        "score_margin": top2[:, 0] - top2[:, 1],
        "chosen_logits": upsampled.unsqueeze(2),  # (B, T, 1, H, W)
    }
    return {"checkpoint": {"model": state}, "io": io}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the ReferFormer tree")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--size", choices=("reduced", "published"), default="reduced")
    parser.add_argument("--backbone", default="video_swin_t_p4w7",
                        help="video_swin_{t,s,b}_p4w7, resnet50, resnet101")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--controller-scale", type=float, default=1.0,
                        help="multiply the controller's last layer (random published-size "
                        "weights give mask logits in the thousands)")  # fmt: skip
    args = parser.parse_args()
    result = build_and_run(
        args.original.resolve(), args.size, args.backbone, args.seed, args.controller_scale
    )
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(result["checkpoint"], args.out / "checkpoint.pth")
    torch.save(result["io"], args.out / "io.pt")
    io = result["io"]
    print(f"chosen queries {io['chosen_query'].tolist()}, margins {io['score_margin'].tolist()}")


if __name__ == "__main__":
    main()
