"""Record the original LoSh-M's forward at reduced dims: its checkpoint, inputs and outputs.

LoSh's released code (LoSh-M) is MTTR with a second, short expression run through the same
weights (``models/mttr.py``, ``models/multimodal_transformer.py``); its checkpoints have MTTR's
keys. This builds it as :mod:`make_mttr_fixture` builds MTTR (same reduced sizes, other seeds,
random perturbed weights, RoBERTa from a config, a fixed-ids tokenizer; ``text_condition``
off, as in LoSh's configs) and runs it on clips of ONE frame: with more frames the original
pairs the transformer output of one frame with the backbone features of other frames
(``repeat(..., '(t t_b)', t=2)`` of ``(t b)``-ordered features against ``cat([long, short],
dim=1)`` of ``(t, b)``-ordered memory), a bug rvoslib does not copy.

Writes to ``OUT`` ``checkpoint.pth`` (``{"model_state_dict": ...}``) and ``io.pt``: ``frames
(B, 1, 3, H, W)``, ``input_ids``/``attention_mask`` (long expressions), ``short_input_ids``/
``short_attention_mask``, the long branch's ``pred_is_referred (T, B, N, 2)``, ``pred_masks
(T, B, N, h, w)``, ``chosen (B,)`` and ``logits (B, T, 1, H, W)`` (LoSh's post-processing uses
the long branch, as MTTR's), and the short branch's ``short_pred_is_referred`` and
``short_pred_masks``.

Usage::

    python tools/originals/make_losh_fixture.py --original /path/to/LoSh \
        --out tests/data/originals/losh
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

import torch


def _mttr_fixture_module() -> Any:
    """The sibling ``make_mttr_fixture.py`` (its helpers: patches, tokenizer, sizes)."""
    path = Path(__file__).with_name("make_mttr_fixture.py")
    spec = importlib.util.spec_from_file_location("make_mttr_fixture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(root: Path, out: Path, published: bool) -> None:
    """Build the original LoSh-M, run it on one-frame clips and save the fixture."""
    helpers = _mttr_fixture_module()
    sizes = helpers.PUBLISHED if published else helpers.REDUCED
    sizes = {**sizes, "input": {**sizes["input"], "frames": 1}}
    helpers.import_original(root)
    import models.backbone as backbone_module
    import models.multimodal_transformer as transformer_module
    from misc import NestedTensor
    from models.mttr import MTTR

    shape = sizes["input"]
    batch, frames, height, width = shape["batch"], shape["frames"], shape["height"], shape["width"]
    texts = [f"long expression {i}" for i in range(batch)]
    shorts = [f"short expression {i}" for i in range(batch)]
    lengths = {**dict(zip(texts, shape["lengths"])), **dict(zip(shorts, (4, 3)))}
    tokenizer = helpers.FixedTokenizer(
        helpers.token_table(lengths, sizes["text"]["vocab_size"], seed=3)
    )
    helpers.patch_original([backbone_module, transformer_module], sizes, tokenizer)
    torch.manual_seed(10)  # other weights and frames than the MTTR fixture's
    model = MTTR(**helpers.mttr_arguments(sizes)).eval()
    helpers.perturb(model, seed=11)
    generator = torch.Generator().manual_seed(12)
    video = torch.randn(batch, frames, 3, height, width, generator=generator)
    padding = torch.zeros(frames, batch, height, width, dtype=torch.bool)
    samples = NestedTensor(video.transpose(0, 1).contiguous(), padding)
    with torch.no_grad():
        long_out, short_out = model(samples, torch.arange(frames), texts, shorts)
    picked = helpers.choose(long_out["pred_is_referred"], long_out["pred_masks"], (height, width))
    print("chosen", picked["chosen"].tolist(), "score margins", picked["margin"].tolist())
    state = helpers.with_position_ids(
        model.state_dict(), "transformer.text_encoder.embeddings.position_ids",
        sizes["text"]["max_position_embeddings"],
    )  # fmt: skip
    short_tokens = tokenizer.encode(shorts)
    io = {
        "frames": video,
        **tokenizer.encode(texts),
        "short_input_ids": short_tokens["input_ids"],
        "short_attention_mask": short_tokens["attention_mask"],
        "pred_is_referred": long_out["pred_is_referred"],
        "pred_masks": long_out["pred_masks"],
        "chosen": picked["chosen"],
        "logits": picked["logits"],
        "short_pred_is_referred": short_out["pred_is_referred"],
        "short_pred_masks": short_out["pred_masks"],
    }
    helpers.save_fixture(out, state, io)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, required=True, help="the LoSh source tree")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--published", action="store_true",
                        help="published sizes (Video-Swin-T, roberta-base; ~600 MB)")  # fmt: skip
    args = parser.parse_args()
    run(args.original.resolve(), args.out, args.published)


if __name__ == "__main__":
    main()
