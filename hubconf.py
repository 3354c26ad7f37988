"""torch.hub entry points: one per rvoslib preset, named with underscores.

    >>> model = torch.hub.load("rvoslib/rvoslib", "mttr_swin_t")            # from GitHub
    >>> model = torch.hub.load(".", "referformer_swin_t", source="local")   # a local clone

Each entry takes ``pretrained`` (load the parts' pretrained weights: the backbone's ImageNet or
Kinetics weights and the language model; downloads when not cached) and ``checkpoint`` (a model
folder or a Hugging Face Hub id, e.g. a converted published checkpoint, loaded instead of a
fresh model), and config overrides as keywords (``num_queries=10``).
"""

from __future__ import annotations

from typing import Any

dependencies = ["torch", "torchvision", "transformers", "safetensors"]


def _entry_name(preset: str) -> str:
    """The entry point of a preset: ``mttr-swin-t`` -> ``mttr_swin_t``."""
    return preset.replace("-", "_").replace(".", "_")


def _entry(preset: str) -> Any:
    def load(pretrained: bool = False, checkpoint: str | None = None, **overrides: Any) -> Any:
        from rvoslib import SegmentationModel, create_model
        from rvoslib.models.presets import get_preset_config

        if checkpoint is not None:
            if overrides or pretrained:
                raise ValueError(
                    "checkpoint= loads a saved model as it is: pass no overrides and no "
                    "pretrained=True with it"
                )
            model = SegmentationModel.from_pretrained(checkpoint)
            if model.architecture != get_preset_config(preset).to_dict()["architecture"]:
                raise ValueError(
                    f"checkpoint {checkpoint!r} holds a {model.architecture!r} model, not the "
                    f"architecture of preset {preset!r}"
                )
            return model
        return create_model(preset, pretrained=pretrained, **overrides)

    load.__name__ = _entry_name(preset)
    load.__doc__ = f"The rvoslib preset {preset!r} (see rvoslib.list_presets())."
    return load


def _entries() -> dict[str, Any]:
    from rvoslib.models.presets import list_presets

    return {_entry_name(preset): _entry(preset) for preset in list_presets()}


globals().update(_entries())
