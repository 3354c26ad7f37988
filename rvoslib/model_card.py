"""Model cards: the ``README.md`` that ``save_pretrained``, the Trainer and ``rvos convert``
write into a model folder, in the Hugging Face Hub's format (YAML metadata, then text).

The metadata says ``library_name: rvoslib``, tags, the datasets, the metrics of the run with
their values (``model-index``) and, for converted checkpoints, the original source and its
licence; the text says what the architecture is (with its paper), what the model is for, how
to load it, and how it was trained and evaluated.

Example:
    >>> card = model_card({"architecture": "mttr"}, metrics={"JF": 0.61},
    ...                   dataset="ref-youtube-vos")
    >>> card.splitlines()[0], "library_name: rvoslib" in card
    ('---', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["CARD_FILE", "PAPERS", "model_card"]

#: The model card's file name in a model folder.
CARD_FILE = "README.md"

#: Architecture name -> (paper title, venue, link).
PAPERS: dict[str, tuple[str, str, str]] = {
    "mttr": (
        "End-to-End Referring Video Object Segmentation with Multimodal Transformers",
        "CVPR 2022",
        "https://arxiv.org/abs/2111.14821",
    ),
    "referformer": (
        "Language as Queries for Referring Video Object Segmentation",
        "CVPR 2022",
        "https://arxiv.org/abs/2201.00487",
    ),
    "soc": (
        "SOC: Semantic-Assisted Object Cluster for Referring Video Object Segmentation",
        "NeurIPS 2023",
        "https://arxiv.org/abs/2305.17011",
    ),
    "losh": (
        "LoSh: Long-Short Text Joint Prediction Network for Referring Video Object Segmentation",
        "CVPR 2024",
        "https://arxiv.org/abs/2306.08736",
    ),
    "seq2seq": (
        "YouTube-VOS: Sequence-to-Sequence Video Object Segmentation",
        "ECCV 2018",
        "https://arxiv.org/abs/1809.00461",
    ),
}

_METRIC_NAMES = {"J": "J (region similarity)", "F": "F (contour accuracy)", "JF": "J&F"}


def _metadata(
    architecture: str,
    metrics: Mapping[str, float],
    dataset: str | None,
    source: Mapping[str, Any] | None,
    task: str,
) -> dict[str, Any]:
    tags = ["rvoslib", "video-object-segmentation", architecture]
    if task == "rvos":
        tags.insert(1, "referring-video-object-segmentation")
    data: dict[str, Any] = {"library_name": "rvoslib", "tags": tags}
    if dataset:
        data["datasets"] = [dataset]
    if source and source.get("license"):
        data["license"] = source["license"]
    values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    if values:
        data["metrics"] = sorted(values)
        data["model-index"] = [
            {
                "name": f"rvoslib-{architecture}",
                "results": [
                    {
                        "task": {"type": "video-object-segmentation", "name": task.upper()},
                        "dataset": {"name": dataset or "unknown", "type": dataset or "unknown"},
                        "metrics": [
                            {"type": key, "name": _METRIC_NAMES.get(key, key), "value": value}
                            for key, value in values.items()
                        ],
                    }
                ],
            }
        ]
    return data


def model_card(
    config: Mapping[str, Any],
    *,
    metrics: Mapping[str, float] | None = None,
    dataset: str | None = None,
    recipe: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
    task: str = "rvos",
) -> str:
    """The text of a model folder's ``README.md``.

    Args:
        config: The model's config dict (``config.json``; needs ``architecture``).
        metrics: Scores of the run, e.g. ``{"J": 0.6, "F": 0.65, "JF": 0.625}``.
        dataset: The dataset the metrics were measured on.
        recipe: The training recipe (written as YAML in the card).
        source: For converted checkpoints: ``{"name", "repository", "file", "license",
            "sha256"}`` of the original.
        task: ``"rvos"`` (text) or ``"vos"`` (first-frame mask).

    Raises:
        ValueError: ``config`` has no ``architecture``.
    """
    architecture = config.get("architecture")
    if not architecture:
        raise ValueError(f"config needs an 'architecture' entry, got keys {sorted(config)}")
    metrics = dict(metrics or {})
    front = yaml.safe_dump(_metadata(architecture, metrics, dataset, source, task), sort_keys=False)
    lines = ["---", front.rstrip(), "---", "", f"# rvoslib {architecture} model", ""]
    paper = PAPERS.get(architecture)
    if paper:
        lines += [f"Architecture: {architecture}, from [{paper[0]}]({paper[2]}) ({paper[1]}).", ""]
    else:
        lines += [f"Architecture: `{architecture}` (rvoslib).", ""]
    what = (
        "segments the object a sentence refers to in every frame of a video (referring video "
        "object segmentation), with no first-frame mask"
        if task == "rvos"
        else "segments the objects of the first frame's mask in every later frame (video "
        "object segmentation)"
    )
    lines += ["## Intended use", "", f"This model {what}.", ""]
    lines += [
        "## How to load",
        "",
        "```python",
        "from rvoslib import SegmentationModel",
        "model = SegmentationModel.from_pretrained('THIS_FOLDER_OR_HUB_ID')",
        "```",
        "",
    ]
    if source:
        licence = source.get("license") or "none stated by the original repository"
        lines += [
            "## Source",
            "",
            f"Converted with `rvos convert --from {source.get('name', '?')}` from "
            f"`{source.get('file', '?')}` (sha256 `{source.get('sha256', '?')}`), published by "
            f"{source.get('repository', '?')}. Licence of the original: {licence}.",
            "",
        ]
    if recipe:
        lines += ["## Training", "", "```yaml", yaml.safe_dump(dict(recipe)).rstrip(), "```", ""]
    if metrics:
        where = f" on {dataset}" if dataset else ""
        lines += [f"## Evaluation{where}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in metrics.items()]
        lines.append("")
    return "\n".join(lines)
