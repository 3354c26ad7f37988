"""Text encoders: any Hugging Face BERT-family model plus a projection to the fusion width.

:class:`TextEncoder` owns its tokenizer. Hugging Face tokenizers load lazily on the first
:meth:`TextEncoder.tokenize` call, so that building an architecture (``pretrained=False``) never
needs a download. :class:`HashTokenizer` is a built-in word-level tokenizer that needs no file
at all (:mod:`rvoslib.models.hash_tokenizer`); the ``tiny`` preset uses it.

Expressions are normalised to Unicode NFC before tokenising, and token ids beyond the
language model's position limit are refused with an error naming the limit.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from rvoslib._checks import check_tensor, is_compiling
from rvoslib._hub import LOCAL_TEXT_OPTION, require_hub_files
from rvoslib.models.hash_tokenizer import HASH_TOKENIZER_FILE, HashTokenizer
from rvoslib.models.registry import TEXT_ENCODERS, TEXT_PROJECTIONS
from rvoslib.models.text_projections import FeatureResizer, LinearNormGELU

__all__ = [
    "FeatureResizer",
    "HashTokenizer",
    "LinearNormGELU",
    "TextEncoder",
    "TextFeatures",
    "known_text_configs",
]

#: Files of which a local Hugging Face tokenizer folder holds at least one.
HF_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json")


def known_text_configs() -> dict[str, dict[str, Any]]:
    """Architectures of common encoders, so that ``pretrained=False`` builds them offline.

    Returns:
        Hub name -> keyword arguments of ``transformers.AutoConfig.for_model``.
    """
    bert_base = {"model_type": "bert"}
    return {
        "bert-base-uncased": bert_base,
        "google-bert/bert-base-uncased": bert_base,
        "bert-base-cased": {"model_type": "bert", "vocab_size": 28996},
        "distilbert-base-uncased": {"model_type": "distilbert"},
        "roberta-base": {
            "model_type": "roberta",
            "vocab_size": 50265,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },
        "sentence-transformers/all-MiniLM-L6-v2": {
            "model_type": "bert",
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
        },
    }


class TextFeatures(NamedTuple):
    """Output of :class:`TextEncoder`: ``sentence``, ``tokens`` and ``mask``."""

    sentence: torch.Tensor
    """``(B, D)`` pooled sentence feature."""
    tokens: torch.Tensor
    """``(B, L, D)`` token features."""
    mask: torch.Tensor
    """``(B, L)`` bool, true for real (non-padding) tokens."""


def _build_language_model(
    name_or_path: str, pretrained: bool, config: dict[str, Any] | None, keep_pooler: bool = False
) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if pretrained:
        if config is not None:
            raise ValueError(
                f"pretrained=True loads {name_or_path!r} with its own architecture; config= "
                "describes a randomly initialised model: pass one or the other"
            )
        require_hub_files(name_or_path, what="text model", local_option=LOCAL_TEXT_OPTION)
        model = AutoModel.from_pretrained(name_or_path)
    else:
        if config is not None:
            settings = dict(config)
            hf_config = AutoConfig.for_model(settings.pop("model_type", "bert"), **settings)
        elif os.path.isdir(name_or_path):
            hf_config = AutoConfig.from_pretrained(name_or_path)
        elif name_or_path in known_text_configs():
            settings = dict(known_text_configs()[name_or_path])
            hf_config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        else:
            try:
                hf_config = AutoConfig.from_pretrained(name_or_path, local_files_only=True)
            except OSError as error:
                known = ", ".join(known_text_configs())
                raise ValueError(
                    f"cannot build text model {name_or_path!r} offline: it is neither a local "
                    f"folder, nor cached, nor one of {known}; pass config={{...}} or "
                    "pretrained=True"
                ) from error
        model = AutoModel.from_config(hf_config)
    if not keep_pooler and getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused: rvoslib pools the last hidden states itself
    return model


@TEXT_ENCODERS.register("huggingface")
class TextEncoder(nn.Module):
    """Encode referring expressions with a Hugging Face encoder and project them.

    The language model's last hidden states are pooled (``cls`` token, attention-mask weighted
    ``mean``, or ``pooler``: the language model's own pooler, e.g. RoBERTa's ``dense -> tanh``
    on the first token, its ``pooler_output`` as ReferFormer and SOC use it) into a sentence
    feature; sentence and token features both go through the same
    projection (a ``TEXT_PROJECTIONS`` part; default ``Linear -> LayerNorm -> GELU``) to
    ``out_dim``.

    Args:
        model_name_or_path: Hub name (``"bert-base-uncased"``, ``"roberta-base"``, ...) or a
            local folder holding a Hugging Face model.
        pretrained: Load the language model's weights (from the folder, the cache, or the hub).
            ``False`` builds the architecture with random weights and needs no download for
            local folders, cached models and the names in :func:`known_text_configs`.
        out_dim: Width of the projected features.
        pooling: ``"cls"``, ``"mean"`` or ``"pooler"``.
        freeze: Freeze the language model (it then always runs in eval mode without gradients).
        config: Architecture overrides for a randomly initialised model, e.g.
            ``{"model_type": "bert", "hidden_size": 64, ...}``; takes precedence over the name.
        tokenizer: ``None`` (the tokenizer that belongs to ``model_name_or_path``, loaded
            lazily), ``"hash"`` (a built-in :class:`HashTokenizer`), a hub name or local folder,
            or a tokenizer object.
        max_length: Default maximum number of tokens; ``None`` truncates only at the language
            model's position limit (the originals of MTTR, ReferFormer and SOC do not truncate).
        projection: ``TEXT_PROJECTIONS`` spec of the projection to ``out_dim``; receives
            ``in_dim`` (the language model's width) and ``out_dim``.

    Example:
        >>> encoder = TextEncoder("tiny", config={"model_type": "bert", "vocab_size": 512,
        ...     "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        ...     "intermediate_size": 64}, tokenizer="hash", out_dim=16)
        >>> tokens = encoder.tokenize(["the red circle", "a dog"])
        >>> features = encoder(tokens["input_ids"], tokens["attention_mask"])
        >>> features.sentence.shape, features.tokens.shape
        (torch.Size([2, 16]), torch.Size([2, 5, 16]))
    """

    def __init__(
        self,
        model_name_or_path: str = "bert-base-uncased",
        *,
        pretrained: bool = False,
        out_dim: int = 256,
        pooling: str = "cls",
        freeze: bool = False,
        config: dict[str, Any] | None = None,
        tokenizer: Any = None,
        max_length: int | None = 32,
        projection: str | Mapping[str, Any] = "linear_norm_gelu",
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean", "pooler"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'pooler', got {pooling!r}")
        self.model_name_or_path = str(model_name_or_path)
        self.pooling = pooling
        self.freeze = freeze
        self.max_length = max_length
        self.language_model = _build_language_model(
            self.model_name_or_path, pretrained, config, keep_pooler=pooling == "pooler"
        )
        if pooling == "pooler" and getattr(self.language_model, "pooler", None) is None:
            raise ValueError(
                f"pooling='pooler' needs a language model with a pooler; "
                f"{self.model_name_or_path!r} has none"
            )
        hidden = self.language_model.config.hidden_size
        self.hidden_size = hidden
        self.out_dim = out_dim
        self.projection = TEXT_PROJECTIONS.build(projection, in_dim=hidden, out_dim=out_dim)
        self._tokenizer_spec = tokenizer
        self._tokenizer: Any = None
        if tokenizer == "hash":
            self._tokenizer = HashTokenizer(self.language_model.config.vocab_size, max_length)
        elif tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
            self._tokenizer = tokenizer
        if freeze:
            self.language_model.requires_grad_(False)
            self.language_model.eval()

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, loaded from the hub or a local folder on first access.

        Raises:
            FileNotFoundError: a local folder holds no tokenizer file (the folder and the
                files looked for are named; nothing is downloaded).
        """
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            source = os.fspath(self._tokenizer_spec or self.model_name_or_path)
            if os.path.isfile(os.path.join(source, HASH_TOKENIZER_FILE)):
                self._tokenizer = HashTokenizer.from_pretrained(source)
            elif os.path.isdir(source):
                if not any(os.path.isfile(os.path.join(source, n)) for n in HF_TOKENIZER_FILES):
                    files = ", ".join((HASH_TOKENIZER_FILE, *HF_TOKENIZER_FILES))
                    raise FileNotFoundError(
                        f"the tokenizer of folder {source!r} is missing: it holds none of "
                        f"{files} (save_pretrained writes them beside config.json); copy them "
                        "from the folder the model was saved to"
                    )
                self._tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            else:
                require_hub_files(
                    source, what="tokenizer of the text model", local_option=LOCAL_TEXT_OPTION
                )
                self._tokenizer = AutoTokenizer.from_pretrained(source)
        return self._tokenizer

    @property
    def position_limit(self) -> int | None:
        """The most tokens the language model takes (its position embeddings), if it says."""
        config = self.language_model.config
        limit = getattr(config, "max_position_embeddings", None)
        if limit is None:
            return None
        if config.model_type in ("roberta", "xlm-roberta", "camembert"):  # positions from pad+1
            limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
        return int(limit)

    def tokenize(
        self, texts: list[str] | str, max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize expressions into padded tensors.

        Args:
            texts: One expression or a list of them.
            max_length: Maximum number of tokens (default ``self.max_length``).

        Returns:
            ``{"input_ids": (B, L) long, "attention_mask": (B, L) long}``.

        Text is normalised to Unicode NFC first, so that composed and decomposed forms of
        one word (``"caf\u00e9"``, ``"cafe\u0301"``) give the same ids.

        Raises:
            ValueError: an expression is empty or not a string, or ``max_length`` exceeds the
                language model's position limit (named).
        """
        if isinstance(texts, str):
            texts = [texts]
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"texts[{i}] must be a non-empty string, got {text!r}")
        length, limit = max_length or self.max_length or self.position_limit, self.position_limit
        if limit is not None and length > limit:
            raise ValueError(
                f"max_length {length} exceeds the text encoder's position limit of {limit} "
                f"tokens (max_position_embeddings of {self.model_name_or_path!r}); pass "
                f"max_length <= {limit}"
            )
        encoded = self.tokenizer(
            [unicodedata.normalize("NFC", text) for text in texts],
            max_length=length,
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def save_tokenizer(self, directory: str | os.PathLike) -> bool:
        """Save the tokenizer files into ``directory`` if a tokenizer is available.

        Returns:
            Whether tokenizer files were written.
        """
        try:
            tokenizer = self.tokenizer
        except (OSError, ValueError):
            return False
        tokenizer.save_pretrained(os.fspath(directory))
        return True

    def adjust_saved_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Record the language model's architecture, so that loading never downloads."""
        hf_config = self.language_model.config.to_dict()
        spec["config"] = {
            k: v
            for k, v in hf_config.items()
            if not k.startswith("_") and k not in ("transformers_version", "architectures")
        }
        spec["config"]["model_type"] = hf_config["model_type"]
        if not isinstance(spec.get("tokenizer"), (str, type(None))):
            spec["tokenizer"] = None  # an object: saved as files next to the config
        return spec

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.freeze:
            self.language_model.eval()
        return self

    def forward(
        self, text_ids: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> TextFeatures:
        """Encode token ids.

        Args:
            text_ids: ``(B, L)`` integer token ids.
            text_mask: ``(B, L)`` attention mask (1/True for real tokens); all ones if omitted.

        Returns:
            :class:`TextFeatures` with ``sentence (B, D)``, ``tokens (B, L, D)``, ``mask (B, L)``.

        Raises:
            ValueError: bad shapes, or more tokens ``L`` than the language model's position
                limit (named: tokenize with :meth:`tokenize`, which truncates).
        """
        if text_mask is None:
            text_mask = torch.ones_like(text_ids, dtype=torch.bool)
        if not is_compiling():
            check_tensor(text_ids, "text_ids", ("B", "L"), floating=False)
            check_tensor(text_mask, "text_mask", ("B", "L"))
            if text_mask.shape != text_ids.shape:
                raise ValueError(
                    f"text_mask must have the shape of text_ids {tuple(text_ids.shape)}, "
                    f"got {tuple(text_mask.shape)}"
                )
            limit = self.position_limit
            if limit is not None and text_ids.shape[1] > limit:
                raise ValueError(
                    f"text_ids has {text_ids.shape[1]} tokens but the text encoder takes at most "
                    f"{limit} (the position limit, max_position_embeddings, of "
                    f"{self.model_name_or_path!r}); tokenize with model.tokenize, which "
                    "truncates to max_length"
                )
        mask = text_mask.bool()
        pooled, hidden = self.language_features(text_ids, mask)
        projected = self.projection(torch.cat([pooled.unsqueeze(1), hidden], dim=1))
        return TextFeatures(sentence=projected[:, 0], tokens=projected[:, 1:], mask=mask)

    def language_features(
        self, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The language model's pooled and token features, before the projection.

        Args:
            text_ids: ``(B, L)`` token ids.
            text_mask: ``(B, L)`` attention mask.

        Returns:
            ``pooled (B, hidden_size)`` and ``tokens (B, L, hidden_size)``.
        """
        mask = text_mask.bool()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            output = self.language_model(input_ids=text_ids, attention_mask=mask.long())
        hidden = output.last_hidden_state
        if self.pooling == "pooler":
            return output.pooler_output, hidden
        if self.pooling == "cls":
            return hidden[:, 0], hidden
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0), hidden
