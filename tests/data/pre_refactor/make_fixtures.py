"""Write the pre-refactor fixtures (run once, on rvoslib at commit bcf97ec, before issue 23).

* ``init_hashes.json``: for every preset that builds offline, the sha256 of each tensor of its
  seeded (``torch.manual_seed(0)``) initial state dict, keyed by state-dict name;
* ``<preset>/``: the ``save_pretrained`` folder of each tiny preset without its weights file
  (``config.json``, tokenizer files), ``weights.json`` (the state-dict names, dtypes and shapes,
  and the values of integer tensors) from which :func:`synthetic_state` rebuilds the weights
  the folder was saved with, and ``expected.safetensors``: eval-mode outputs on seeded inputs.

Usage: ``python tests/data/pre_refactor/make_fixtures.py``
"""

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from rvoslib import create_model, list_presets

HERE = Path(__file__).parent
CHECKPOINTS = [
    "tiny",
    "tiny-video",
    "tiny-motion",
    "tiny-film",
    "mttr-tiny",
    "referformer-tiny",
    "soc-tiny",
    "losh-tiny",
    "s2s-tiny",
]


def tensor_hash(value: torch.Tensor) -> str:
    value = value.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{value.dtype}{tuple(value.shape)}".encode())
    digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:20]


def weights_layout(state: dict) -> dict:
    """Names -> ``[dtype, shape]`` (floating tensors) or ``[dtype, shape, values]``."""
    layout = {}
    for key, value in state.items():
        entry = [str(value.dtype).removeprefix("torch."), list(value.shape)]
        if not value.is_floating_point():
            entry.append(value.flatten().tolist())
        layout[key] = entry
    return layout


def synthetic_state(layout: dict) -> dict:
    """Deterministic weights for a layout, seeded by each name's CRC-32: normal values with
    std ``1/sqrt(fan_in)`` for tensors of two or more dimensions, ``1 + 0.1 N(0, 1)`` for
    one-dimensional weights (norm scales), ``0.05 N(0, 1)`` for the other one-dimensional
    tensors, BatchNorm variances in [1, 2), integer tensors as recorded."""
    import zlib

    state = {}
    for key, (dtype, shape, *values) in layout.items():
        dtype = getattr(torch, dtype)
        if values:
            state[key] = torch.tensor(values[0], dtype=dtype).reshape(shape)
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("running_var"):
            value = 1 + torch.rand(shape, generator=generator, dtype=torch.float64)
        else:
            value = torch.randn(shape, generator=generator, dtype=torch.float64)
            if len(shape) >= 2:
                value = value / math.sqrt(math.prod(shape[1:]))
            elif key.endswith("weight"):
                value = 1 + 0.1 * value
            else:
                value = 0.05 * value
        state[key] = value.to(dtype)
    return state


def loss_targets() -> dict:
    """A referred-object mask ``(1, 3, 64, 64)`` (visible in frames 0 and 2) and ``valid``."""
    masks = torch.zeros(1, 3, 64, 64)
    masks[0, 0, 10:30, 12:40] = 1
    masks[0, 2, 20:44, 16:50] = 1
    return {"masks": masks, "valid": torch.tensor([[True, True, False]])}


def inputs(name: str, model) -> dict:
    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(1, 3, 3, 64, 64, generator=generator)
    if name.startswith("s2s"):
        mask = torch.zeros(1, 64, 64)
        mask[0, 16:40, 20:44] = 1
        return {"frames": frames, "first_mask": mask}
    tokens = model.tokenize(["the red circle moving left"])
    return {
        "frames": frames,
        "text_ids": tokens["input_ids"],
        "text_mask": tokens["attention_mask"],
    }


def main() -> None:
    hashes = {}
    for name in list_presets():
        torch.manual_seed(0)
        try:
            model = create_model(name)
        except Exception as error:  # needs a download
            print(f"{name}: not built offline ({type(error).__name__})")
            continue
        hashes[name] = {k: tensor_hash(v) for k, v in model.state_dict().items()}
        print(f"{name}: {len(hashes[name])} tensors")
    (HERE / "init_hashes.json").write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    for name in CHECKPOINTS:
        torch.manual_seed(0)
        model = create_model(name).eval()
        layout = weights_layout(model.state_dict())
        model.load_state_dict(synthetic_state(layout))
        folder = HERE / name
        model.save_pretrained(folder)
        (folder / "model.safetensors").unlink()
        (folder / "weights.json").write_text(json.dumps(layout) + "\n")
        batch = inputs(name, model)
        with torch.no_grad():
            outputs = (
                model.forward_outputs(batch["frames"], batch["first_mask"])
                if "first_mask" in batch
                else model.forward_outputs(
                    batch["frames"], model.encode_text(batch["text_ids"], batch["text_mask"])
                )
            )
            predicted = model.predict(batch, clip_len=2)
            target = {**batch, **loss_targets()}
            losses = model.losses(outputs, target)
        tensors = {
            f"output.{k}": v.detach().contiguous()
            for k, v in outputs.items()
            if isinstance(v, torch.Tensor)
        }
        tensors.update({f"input.{k}": v.contiguous() for k, v in batch.items()})
        tensors["predict"] = predicted.contiguous()
        tensors.update({f"target.{k}": v.contiguous() for k, v in loss_targets().items()})
        tensors.update({f"loss.{k}": v.detach().reshape(()) for k, v in losses.items()})
        save_file(tensors, str(folder / "expected.safetensors"))
        print(name, {k: float(v) for k, v in losses.items()})


if __name__ == "__main__":
    main()
