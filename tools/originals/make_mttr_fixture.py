"""Record the original MTTR's forward at reduced dims: its checkpoint, inputs and outputs.

Builds the original ``models/mttr.py`` ``MTTR`` on the CPU with random weights, at reduced
sizes by default (Video-Swin embed 16, depths 1/1/1 (+ the 4th stage MTTR drops), heads
1/2/4, window (2, 7, 7); a RoBERTa-shaped text model of width 64, 2 layers, 1 head; d_model 64,
8 heads, 1 encoder and 2 decoder layers, FFN 128, 5 queries), or at the published sizes with
``--published`` (Video-Swin-T, roberta-base's shape, d_model 256, 3 + 3 layers, FFN 2048, 50
queries; random weights, nothing is downloaded). Every 1-D parameter (norms, biases) is
perturbed so that a wrong mapping shows, and the referred head is scaled for a clear choice.
The RoBERTa weights are built from a ``RobertaConfig`` (``RobertaModel.from_pretrained`` is
replaced), and the tokenizer by one that returns fixed token ids per expression, so that the
original ``forward_text`` runs unchanged.

Writes to ``OUT``:

* ``checkpoint.pth``: ``{"model_state_dict": ...}`` as MTTR's released checkpoints, with the
  ``embeddings.position_ids`` buffer that transformers 4.x saved;
* ``shapes.json`` (``--published`` only): every tensor's shape and dtype;
* ``io.pt``: ``frames (B, T, 3, H, W)`` (rvoslib's layout; the original took ``(T, B, ...)``),
  ``input_ids``/``attention_mask (B, L)``, the original outputs ``pred_is_referred (T, B, N,
  2)`` and ``pred_masks (T, B, N, H/4, W/4)`` of the last decoder layer, ``chosen (B,)`` (the
  query ``ReferYoutubeVOSPostProcess`` chooses: argmax of the time-mean of
  ``softmax(is_referred)[..., 0]``) and ``logits (B, T, 1, H, W)`` (that query's masks
  upsampled bilinearly to the frame size, the post-processing before the threshold).

Usage::

    python tools/originals/make_mttr_fixture.py --original /path/to/MTTR \
        --out tests/data/originals/mttr
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

REDUCED = {
    "swin": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 4),
             "window_size": (2, 7, 7)},
    "text": {"vocab_size": 120, "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 1, "intermediate_size": 128, "max_position_embeddings": 66},
    "model": {"d_model": 64, "nheads": 8, "num_encoder_layers": 1, "num_decoder_layers": 2,
              "dim_feedforward": 128, "num_queries": 5, "mask_kernels_dim": 8},
    "input": {"batch": 2, "frames": 3, "height": 48, "width": 64, "lengths": (7, 5)},
}  # fmt: skip
PUBLISHED = {
    "swin": None,  # MTTR's own Video-Swin-T
    "text": {"vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072,
             "max_position_embeddings": 514},
    "model": {"d_model": 256, "nheads": 8, "num_encoder_layers": 3, "num_decoder_layers": 3,
              "dim_feedforward": 2048, "num_queries": 50, "mask_kernels_dim": 8},
    "input": {"batch": 2, "frames": 4, "height": 128, "width": 160, "lengths": (12, 9)},
}  # fmt: skip


def import_original(root: Path) -> None:
    """Put the original tree first on ``sys.path`` (``pycocotools`` is stubbed when missing:
    only the post-processing's RLE encoding uses it)."""
    sys.path.insert(0, str(root))
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pycocotools")
        stub.mask = types.ModuleType("pycocotools.mask")
        sys.modules["pycocotools"], sys.modules["pycocotools.mask"] = stub, stub.mask


class FixedTokenizer:
    """Stands in for ``RobertaTokenizerFast``: each expression (a placeholder) has fixed ids;
    a batch is padded to its longest (pad id 1), as the original asks (``padding='longest'``,
    no truncation)."""

    def __init__(self, table: dict[str, list[int]]) -> None:
        self.table = table

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``{"input_ids", "attention_mask"}`` ``(B, L)`` of ``texts``."""
        rows = [self.table[text] for text in texts]
        longest = max(len(row) for row in rows)
        ids = torch.ones(len(rows), longest, dtype=torch.long)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row)
            mask[index, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def batch_encode_plus(self, texts: list[str], **kwargs: Any) -> Any:
        from transformers import BatchEncoding

        return BatchEncoding(self.encode(texts))


def token_table(lengths: dict[str, int], vocab: int, seed: int) -> dict[str, list[int]]:
    """RoBERTa-like ids per expression: ``<s>`` (0), words in ``[3, vocab)``, ``</s>`` (2)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        text: [0, *torch.randint(3, vocab, (length - 2,), generator=generator).tolist(), 2]
        for text, length in lengths.items()
    }


def patch_original(modules: list[Any], sizes: dict[str, Any], tokenizer: Any) -> None:
    """Replace the downloads of the original's modules: ``RobertaModel.from_pretrained`` (a
    model from a ``RobertaConfig`` of ``sizes["text"]``), the tokenizer, and the Video-Swin
    sizes (``sizes["swin"]``, ``None`` = MTTR's)."""
    from transformers import RobertaConfig, RobertaModel

    text = sizes["text"]

    def build_roberta(name: str, **kwargs: Any) -> Any:
        config = RobertaConfig(**text, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                               eos_token_id=2, layer_norm_eps=1e-5)  # fmt: skip
        return RobertaModel(config)

    for module in modules:
        if hasattr(module, "RobertaModel"):
            module.RobertaModel = types.SimpleNamespace(from_pretrained=build_roberta)
            module.RobertaTokenizerFast = types.SimpleNamespace(
                from_pretrained=lambda name, **kwargs: tokenizer
            )
        if hasattr(module, "SwinTransformer3D") and sizes["swin"] is not None:
            module.SwinTransformer3D = functools.partial(
                _resized_swin, module.SwinTransformer3D, sizes["swin"]
            )


def _resized_swin(original: Any, swin: dict[str, Any], **kwargs: Any) -> Any:
    """``SwinTransformer3D`` with the sizes of ``swin`` instead of MTTR's."""
    return original(**{**kwargs, **swin})


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every 1-D parameter (LayerNorm/GroupNorm affine, biases): freshly
    initialised ones are 0 or 1, which would hide swapped or misnamed entries. The referred
    head's weights are scaled by 8 so that the chosen query wins by a clear margin."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
        model.is_referred_head.weight.mul_(8.0)


def mttr_arguments(sizes: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``MTTR(**vars(args))`` receives (``configs/*.yaml`` + sizes)."""
    return {
        "backbone_name": "swin-t",
        "backbone_pretrained": False,
        "backbone_pretrained_path": None,
        "train_backbone": False,
        "running_mode": "eval",
        "text_encoder_type": "roberta-base",
        "freeze_text_encoder": True,
        "dropout": 0.1,
        "aux_loss": True,
        "text_condition": False,  # LoSh's option (off in its configs)
        **sizes["model"],
    }


def choose(pred_is_referred: torch.Tensor, pred_masks: torch.Tensor, size: tuple[int, int]) -> dict:
    """MTTR's ``ReferYoutubeVOSPostProcess`` up to the threshold: the query of highest
    time-mean referred probability and its masks upsampled to ``size``, ``(B, T, 1, H, W)``."""
    scores = F.softmax(pred_is_referred, dim=-1)[..., 0].mean(dim=0)  # (B, N)
    chosen = scores.argmax(dim=-1)
    masks = pred_masks.transpose(0, 1)  # (B, T, N, h, w)
    picked = masks[torch.arange(masks.shape[0]), :, chosen]  # (B, T, h, w)
    logits = F.interpolate(picked, size=size, mode="bilinear", align_corners=False)
    top2 = scores.topk(2, dim=-1).values
    return {"chosen": chosen, "logits": logits.unsqueeze(2), "margin": top2[:, 0] - top2[:, 1]}


def save_fixture(
    out: Path, state: dict[str, torch.Tensor], io: dict[str, Any], shapes: bool = False
) -> None:
    """Write ``checkpoint.pth`` and ``io.pt`` and check that both load with
    ``weights_only=True``; with ``shapes``, also ``shapes.json`` (each tensor's shape and
    dtype: what detection reads, small enough to commit for the published sizes)."""
    out.mkdir(parents=True, exist_ok=True)
    if shapes:
        table = {key: [list(value.shape), str(value.dtype)] for key, value in state.items()}
        (out / "shapes.json").write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    torch.save({"model_state_dict": state}, out / "checkpoint.pth")
    torch.save(io, out / "io.pt")
    for name in ("checkpoint.pth", "io.pt"):
        torch.load(out / name, weights_only=True)
        print(f"wrote {out / name} ({(out / name).stat().st_size / 1e6:.2f} MB)")


def with_position_ids(state: dict[str, torch.Tensor], key: str, limit: int) -> dict:
    """The state dict with the ``embeddings.position_ids`` buffer transformers 4.x saved."""
    return {**state, key: torch.arange(limit)[None]}


def run(root: Path, out: Path, published: bool, build: Callable[..., Any] | None = None) -> None:
    """Build the original MTTR, run it on fixed inputs and save the fixture."""
    sizes = PUBLISHED if published else REDUCED
    import_original(root)
    import models.backbone as backbone_module
    import models.multimodal_transformer as transformer_module
    from misc import NestedTensor
    from models.mttr import MTTR

    shape = sizes["input"]
    texts = [f"expression {i}" for i in range(shape["batch"])]
    lengths = dict(zip(texts, shape["lengths"]))
    tokenizer = FixedTokenizer(token_table(lengths, sizes["text"]["vocab_size"], seed=3))
    patch_original([backbone_module, transformer_module], sizes, tokenizer)
    torch.manual_seed(0)
    model = MTTR(**mttr_arguments(sizes)).eval()
    perturb(model, seed=1)
    generator = torch.Generator().manual_seed(2)
    batch, frames, height, width = shape["batch"], shape["frames"], shape["height"], shape["width"]
    video = torch.randn(batch, frames, 3, height, width, generator=generator)
    samples = NestedTensor(
        video.transpose(0, 1).contiguous(),
        torch.zeros(frames, batch, height, width, dtype=torch.bool),
    )
    with torch.no_grad():
        outputs = model(samples, torch.arange(frames), texts)
    picked = choose(outputs["pred_is_referred"], outputs["pred_masks"], (height, width))
    print("chosen", picked["chosen"].tolist(), "score margins", picked["margin"].tolist())
    state = with_position_ids(
        model.state_dict(), "transformer.text_encoder.embeddings.position_ids",
        sizes["text"]["max_position_embeddings"],
    )  # fmt: skip
    io = {
        "frames": video,
        **tokenizer.encode(texts),
        "pred_is_referred": outputs["pred_is_referred"],
        "pred_masks": outputs["pred_masks"],
        "chosen": picked["chosen"],
        "logits": picked["logits"],
    }
    save_fixture(out, state, io, shapes=published)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the MTTR source tree")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--published", action="store_true",
                        help="published sizes (Video-Swin-T, roberta-base; ~600 MB)")  # fmt: skip
    args = parser.parse_args()
    run(args.original.resolve(), args.out, args.published)


if __name__ == "__main__":
    main()
