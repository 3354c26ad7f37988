"""Make the inference fixtures of tests/test_inference_protocols.py from the ORIGINAL code.

For MTTR (commit 2cc35ab) and ReferFormer (commit 06fc218) this builds a reduced-size original
model with random weights (seed 0), runs the original inference path on a few frames of a
davis-mini sequence with one expression, and saves:

* ``<system>/checkpoint.pth``: the original model's weights in its checkpoint format (MTTR:
  ``{"model_state_dict": ...}``; ReferFormer: ``{"model": ...}``);
* ``<system>/case.pt``: ``input_ids`` / ``attention_mask`` ``(1, L)``, the ``expected``
  masks ``(T, H, W)`` at the original resolution as packed bits (``numpy.packbits`` of the
  flattened bool masks; ``expected_shape``), the chosen query (``query``), the model input
  size (``input_size``) and the ``settings`` of the reduced model;
* ``frames.pt``: the frames as the JPEG files' bytes (``frames_jpeg``: uint8 tensors),
  ``frame_names`` and ``sequence``.

The original inference path is used as it is, by import. MTTR: the validation transforms
(``A2dSentencesTransforms``: ``RandomResize([360], max_size=640)``), ``Collator``
(NestedTensor padding), ``MTTR.forward`` and ``ReferYoutubeVOSPostProcess`` (the steps of
``Trainer.evaluate_refer_youtube_vos`` before it writes PNGs). ReferFormer:
``inference_ytvos.sub_processor`` itself, on one CPU process, with ``build_model`` returning
the reduced model and ``args.resume`` its checkpoint; the PNG masks it writes are read back.
Only what downloads or needs a GPU is patched: the RoBERTa model is built from a small
``RobertaConfig``, the tokenizer returns the fixed token ids, the deformable-attention CUDA op
is the original's own pure-PyTorch ``ms_deform_attn_core_pytorch``, ``torch.cuda.set_device``
does nothing, fvcore's initialiser is replaced, and the Video-Swin configs are reduced.

Usage::

    python tools/originals/make_inference_fixtures.py --original /work/scratch/orig \\
        --out tests/data/originals/inference --davis /work/shared/data/davis-mini
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

SEQUENCE = "blackswan"
FRAMES = ["00000", "00007", "00014", "00021", "00028", "00035"]
#: Token ids of the expression (a BOS, words, EOS): the fixture's RoBERTa has a 128-word
#: vocabulary, so the ids are arbitrary but fixed.
INPUT_IDS = [[0, 17, 103, 88, 112, 51, 36, 2]]
ROBERTA = {
    "vocab_size": 128,
    "hidden_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "intermediate_size": 128,
    "max_position_embeddings": 40,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "layer_norm_eps": 1e-5,
}


#: The reduced Video-Swin (published: 96, (2, 2, 6, 2), (3, 6, 12, 24), window (8, 7, 7)); the
#: window's temporal size 2 keeps the relative-position index buffers small.
SWIN = {
    "embed_dim": 16,
    "depths": (1, 1, 1, 1),
    "num_heads": (1, 2, 2, 2),
    "window_size": (2, 7, 7),
}


def _roberta_patches(transformers) -> None:
    """RobertaModel.from_pretrained -> a small random RoBERTa; the tokenizers -> fixed ids."""
    config = transformers.RobertaConfig(**ROBERTA)

    def small_model(*args, **kwargs):
        return transformers.RobertaModel(config, add_pooling_layer=True)

    class FixedTokenizer:
        def __call__(self, texts, **kwargs):
            return self.batch_encode_plus(texts, **kwargs)

        def batch_encode_plus(self, texts, **kwargs):
            ids = torch.tensor(INPUT_IDS * len(texts))
            return transformers.BatchEncoding(
                {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            )

    transformers.RobertaModel.from_pretrained = staticmethod(small_model)
    for name in ("RobertaTokenizerFast", "RobertaTokenizer"):
        getattr(transformers, name).from_pretrained = staticmethod(lambda *a, **k: FixedTokenizer())


def _bare_package(name: str, folder: Path) -> None:
    """Make ``name`` the package of ``folder`` without running its ``__init__``."""
    package = types.ModuleType(name)
    package.__path__ = [str(folder)]
    sys.modules[name] = package


def _read_frames(davis: Path) -> tuple[list[Path], list[torch.Tensor]]:
    paths = [davis / "JPEGImages" / "480p" / SEQUENCE / f"{name}.jpg" for name in FRAMES]
    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    return paths, data


def _save(out: Path, checkpoint: dict, case: dict, jpegs: list[torch.Tensor]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frames = {"frames_jpeg": jpegs, "frame_names": FRAMES, "sequence": SEQUENCE}
    torch.save(frames, out.parent / "frames.pt")
    torch.save(checkpoint, out / "checkpoint.pth")
    torch.save(case, out / "case.pt")
    for name in ("checkpoint.pth", "case.pt"):
        torch.load(out / name, weights_only=True)  # loadable safely
    print(f"wrote {out}: " + ", ".join(f"{p.name} {p.stat().st_size} B" for p in out.iterdir()))


def make_mttr(original: Path, out: Path, davis: Path) -> None:
    """The MTTR fixture: its Ref-YouTube-VOS validation path on the whole clip."""
    sys.path.insert(0, str(original / "MTTR"))
    import transformers

    _roberta_patches(transformers)
    _bare_package("datasets", original / "MTTR" / "datasets")  # skip its A2D/JHMDB imports
    import models.backbone as backbone_module
    from datasets.refer_youtube_vos.refer_youtube_vos_dataset import (
        A2dSentencesTransforms,
        Collator,
    )
    from models.mttr import MTTR
    from models.postprocessing import ReferYoutubeVOSPostProcess
    from PIL import Image

    small_swin = backbone_module.SwinTransformer3D

    def reduced_swin(**kwargs):
        kwargs.update(SWIN)
        return small_swin(**kwargs)

    backbone_module.SwinTransformer3D = reduced_swin
    torch.manual_seed(0)
    settings = {
        "num_queries": 6,
        "mask_kernels_dim": 8,
        "d_model": 64,
        "nheads": 8,
        "dim_feedforward": 64,
        "num_encoder_layers": 1,
        "num_decoder_layers": 2,
        "dropout": 0.1,
        "swin": {k: list(v) if isinstance(v, tuple) else v for k, v in SWIN.items()},
        "roberta": ROBERTA,
    }
    model = MTTR(
        num_queries=6, mask_kernels_dim=8, aux_loss=True, backbone_name="swin-t",
        backbone_pretrained=False,
        backbone_pretrained_path="", train_backbone=True, running_mode="eval", d_model=64,
        nheads=8, dim_feedforward=64, num_encoder_layers=1, num_decoder_layers=2, dropout=0.1,
        text_encoder_type="roberta-base", freeze_text_encoder=True,
    ).eval()  # fmt: skip
    paths, jpegs = _read_frames(davis)
    transforms = A2dSentencesTransforms(
        "valid", horizontal_flip_augmentations=True, resize_and_crop_augmentations=True,
        train_short_size=360, train_max_size=640, eval_short_size=360, eval_max_size=640,
    )  # fmt: skip
    images = [Image.open(p) for p in paths]
    original_size = images[0].size[::-1]
    frames, _, text = transforms(images, len(images) * [None], "a black swan swimming")
    metadata = {
        "video_id": SEQUENCE,
        "frame_indices": FRAMES,
        "resized_frame_size": frames.shape[-2:],
        "original_frame_size": original_size,
        "exp_id": "0",
    }
    batch = Collator("valid")([(frames, metadata, text)])
    samples = batch["samples"]
    with torch.no_grad():
        outputs = model(samples, torch.arange(len(samples.tensors)), batch["text_queries"])
    predictions = ReferYoutubeVOSPostProcess()(
        outputs, batch["videos_metadata"], samples.tensors.shape[-2:]
    )
    expected = predictions[0]["pred_masks"][:, 0].bool()  # (T, H, W)
    scores = outputs["pred_is_referred"].softmax(-1)[..., 0].mean(0)  # (B, N)
    query = int(scores.argmax(-1)[0])
    top2 = scores[0].topk(2).values
    print(f"chosen query {query}, score margin {float(top2[0] - top2[1]):.4f}")
    logits = outputs["pred_masks"][:, 0, query]
    _report(logits, expected, samples.tensors.shape[-2:])
    state = {k: v for k, v in model.state_dict().items()}
    case = {
        "input_ids": torch.tensor(INPUT_IDS),
        "attention_mask": torch.ones(1, len(INPUT_IDS[0]), dtype=torch.long),
        "expected": _pack(expected),
        "expected_shape": list(expected.shape),
        "query": query,
        "input_size": list(samples.tensors.shape[-2:]),
        "settings": settings,
    }
    _save(out / "mttr", {"model_state_dict": state}, case, jpegs)


def _pack(masks: torch.Tensor) -> torch.Tensor:
    """Bool masks -> uint8 bits (``numpy.packbits`` of the flattened masks)."""
    import numpy as np

    return torch.from_numpy(np.packbits(masks.numpy().reshape(-1)))


def _report(logits: torch.Tensor, expected: torch.Tensor, input_size) -> None:
    near = (logits.abs() < 1e-3).float().mean().item()
    print(
        f"input {tuple(input_size)}, logits {tuple(logits.shape)} range "
        f"[{logits.min():.3f}, {logits.max():.3f}], |logit| < 1e-3: {near:.2e}; "
        f"mask {tuple(expected.shape)} foreground {expected.float().mean():.3f}"
    )


#: The reduced ReferFormer (published: Video-Swin-T, hidden 256, 8 heads, FFN 2048, 4 + 4
#: layers, mask_dim 256); 8 heads as published (converters take the heads from the configs).
REFERFORMER = {"hidden_dim": 32, "nheads": 8, "dim_feedforward": 64, "enc_layers": 2,
               "dec_layers": 2, "mask_dim": 8}  # fmt: skip
REFERFORMER_SWIN = {"embed_dim": 8, "depths": [1, 1, 2, 1], "num_heads": [1, 1, 2, 2]}


def _referformer_stubs(root: Path) -> None:
    """No fvcore (an initialiser) and no compiled op: the op is the original's own
    ``ms_deform_attn_core_pytorch``."""
    from torch import nn

    weight_init = types.ModuleType("fvcore.nn.weight_init")

    def c2_xavier_fill(module: nn.Module) -> None:
        nn.init.kaiming_uniform_(module.weight, a=1)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

    weight_init.c2_xavier_fill = c2_xavier_fill
    fvcore_nn = types.ModuleType("fvcore.nn")
    fvcore_nn.weight_init = weight_init
    fvcore = types.ModuleType("fvcore")
    fvcore.nn = fvcore_nn
    op = types.ModuleType("MultiScaleDeformableAttention")
    sys.modules.update({"fvcore": fvcore, "fvcore.nn": fvcore_nn,
                        "fvcore.nn.weight_init": weight_init,
                        "MultiScaleDeformableAttention": op})  # fmt: skip
    sys.path.insert(0, str(root))
    from models.ops.functions.ms_deform_attn_func import ms_deform_attn_core_pytorch

    op.ms_deform_attn_forward = lambda value, shapes, starts, locations, weights, step: (
        ms_deform_attn_core_pytorch(value, shapes, locations, weights)
    )


def make_referformer(original: Path, out: Path, davis: Path) -> None:
    """The ReferFormer fixture: ``inference_ytvos.py`` on the whole clip."""
    import transformers

    _referformer_stubs(original / "ReferFormer")
    _roberta_patches(transformers)
    import inference_ytvos
    import models.referformer as referformer
    import models.video_swin_transformer as video_swin
    from opts import get_args_parser

    for config in video_swin.configs.values():
        config.update(REFERFORMER_SWIN)
    args = get_args_parser().parse_args(
        ["--with_box_refine", "--binary", "--freeze_text_encoder", "--masks",
         "--backbone", "video_swin_t_p4w7", "--device", "cpu"]
    )  # fmt: skip
    for name, value in REFERFORMER.items():
        setattr(args, name, value)
    torch.manual_seed(0)
    model, _, _ = referformer.build(args)
    # the original hard-codes roberta-base's 768 input channels of the resizer
    model.resizer = referformer.FeatureResizer(ROBERTA["hidden_size"], args.hidden_dim, 0.1)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # perturb zero-initialised heads; clear margins between queries
        for name, parameter in model.named_parameters():
            scale = 0.5 if name.startswith("class_embed.") else 0.02
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    model.eval()
    _, jpegs = _read_frames(davis)
    state = {
        k: v for k, v in model.state_dict().items() if not k.endswith("relative_position_index")
    }
    with tempfile.TemporaryDirectory() as scratch:
        args.resume = str(Path(scratch) / "checkpoint.pth")
        torch.save({"model": model.state_dict()}, args.resume)
        expected, outputs = _run_sub_processor(inference_ytvos, model, args, davis, Path(scratch))
    scores = outputs["pred_logits"][0].sigmoid().mean(0).max(-1).values  # (N,)
    query = int(scores.argmax())
    logits = outputs["pred_masks"][0][:, query]
    _report(logits, expected, outputs["input_size"])
    top2 = scores.topk(2).values
    print(f"chosen query {query}, score margin {float(top2[0] - top2[1]):.4f}")
    print(f"mean scores {[round(float(v), 4) for v in scores]}")
    case = {
        "input_ids": torch.tensor(INPUT_IDS),
        "attention_mask": torch.ones(1, len(INPUT_IDS[0]), dtype=torch.long),
        "expected": _pack(expected),
        "expected_shape": list(expected.shape),
        "query": query,
        "input_size": list(outputs["input_size"]),
        "settings": {**REFERFORMER, "swin": REFERFORMER_SWIN, "roberta": ROBERTA},
    }
    _save(out / "referformer", {"model": state}, case, jpegs)


def _run_sub_processor(module, model, args, davis: Path, scratch: Path):
    """Run ``inference_ytvos.sub_processor`` (one process, CPU) on the sequence and read back
    the PNG masks it writes; also return the model's outputs of that run (recorded by a
    forward hook) and the input size."""
    import threading

    import numpy as np
    from PIL import Image

    recorded: dict = {}

    def hook(module_, inputs, outputs):
        recorded.update(outputs, input_size=tuple(inputs[0][0].shape[-2:]))

    model.register_forward_hook(hook)
    module.build_model = lambda args_: (model, None, None)
    module.result_dict = {}
    module.torch.cuda.set_device = lambda device: None
    args.visualize, args.split = False, "valid"
    data = {SEQUENCE: {"expressions": {"0": {"exp": "a black swan swimming"}}, "frames": FRAMES}}
    module.sub_processor(
        threading.Lock(), 0, args, data, str(scratch / "valid"), str(scratch / "images"),
        str(davis / "JPEGImages" / "480p"), [SEQUENCE],
    )  # fmt: skip
    folder = scratch / "valid" / SEQUENCE / "0"
    masks = [np.asarray(Image.open(folder / f"{name}.png")) > 127 for name in FRAMES]
    return torch.from_numpy(np.stack(masks)), recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="folder with MTTR/ and ReferFormer/")
    parser.add_argument("--out", required=True, help="fixture folder")
    parser.add_argument("--davis", required=True, help="davis-mini root")
    parser.add_argument("--system", choices=("all", "mttr", "referformer"), default="all")
    args = parser.parse_args(argv)
    original, out, davis = Path(args.original), Path(args.out), Path(args.davis)
    if args.system == "all":  # one process each: both originals have top-level "models"
        for system in ("mttr", "referformer"):
            command = [sys.executable, __file__, "--original", str(original), "--out", str(out)]
            subprocess.run([*command, "--davis", str(davis), "--system", system], check=True)
        return 0
    if args.system == "mttr":
        make_mttr(original, out, davis)
    else:
        make_referformer(original, out, davis)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
