"""Fail fast, with the ways out, when a Hugging Face Hub model is neither local nor reachable.

Without a network, ``transformers`` retries for about a minute before it says it could not
connect. :func:`require_hub_files` answers within seconds instead: a local folder or a cached
file is used as is; otherwise the Hub's host is probed once (DNS and a TCP connection, a few
seconds at most) and, when it cannot be reached or ``HF_HUB_OFFLINE`` is set, an
:class:`HubUnavailableError` names the model id and how to get it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

__all__ = [
    "HubUnavailableError",
    "hub_is_offline",
    "require_hub_files",
    "require_text_encoder_files",
    "torchvision_download",
]

#: The option of ``rvos train`` that points the text encoder at a local folder.
LOCAL_TEXT_OPTION = "--model.text_encoder.model_name_or_path"
#: Seconds to wait for the Hub's host to accept a connection.
PROBE_TIMEOUT = 3.0


class HubUnavailableError(OSError):
    """A Hub model is not available locally and the Hub cannot be used."""


def hub_is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` asks for no network."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _probe(endpoint: str) -> str | None:
    """``None`` when ``endpoint``'s host accepts a TCP connection, else the reason."""
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return None
    except OSError as error:
        return f"{host}:{port}: {error}"


def require_hub_files(
    repo_id: str, *, what: str = "model", filename: str = "config.json", local_option: str = ""
) -> None:
    """Return when ``repo_id`` is a local folder, is cached, or the Hub can be reached.

    Args:
        repo_id: A Hub model id (``"bert-base-uncased"``, ``"org/name"``) or a local folder.
        what: What the model is, for the message (``"text model"``).
        filename: A file the cache must hold for ``repo_id`` to count as cached.
        local_option: The option that points at a local copy instead, named in the message.

    Raises:
        HubUnavailableError: not local, not cached, and ``HF_HUB_OFFLINE`` is set or the Hub's
            host cannot be reached; the message names ``repo_id`` and the two ways out.
    """
    if os.path.isdir(repo_id):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, filename)
    except ValueError:  # not a valid repo id: let the loader name the problem
        return
    if isinstance(cached, str):
        return
    reason = "HF_HUB_OFFLINE is set" if hub_is_offline() else _probe(constants.ENDPOINT)
    if reason is None:
        return
    local = f" ({local_option} /path/to/folder)" if local_option else ""
    raise HubUnavailableError(
        f"the {what} {repo_id!r} is not a local folder, not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}), and the Hub cannot be used ({reason}). Two ways out: "
        f"(1) point rvoslib at a local copy{local}: a folder holding its config.json, weights "
        f"and tokenizer files (save one with `AutoModel.from_pretrained({repo_id!r})"
        f".save_pretrained(DIR)` and the same for AutoTokenizer, where there is a network); "
        f"(2) fill the cache once where there is a network (`hf download {repo_id}`, or load "
        "it once with transformers), copy HF_HOME to this machine and set HF_HUB_OFFLINE=1"
    )


def require_text_encoder_files(spec: Any) -> None:
    """Fail within seconds when a text encoder spec needs Hub files that cannot be had.

    Called by ``rvos train`` before any data is read: the tokenizer (and, with ``pretrained``,
    the language model) of a ``"huggingface"`` spec must be a local folder, in the Hugging Face
    cache, or reachable (:func:`require_hub_files`). Other specs pass.

    Args:
        spec: A text encoder spec (``{"name": "huggingface", "model_name_or_path": ...}``), or
            anything else (ignored).

    Raises:
        HubUnavailableError: a needed source is neither local, cached nor reachable; the
            message names it and the two ways out.
    """
    if not isinstance(spec, dict) or spec.get("name") != "huggingface":
        return
    name = spec.get("model_name_or_path")
    tokenizer = spec.get("tokenizer") or name
    if isinstance(tokenizer, (str, os.PathLike)) and tokenizer != "hash":
        require_hub_files(
            os.fspath(tokenizer), what="tokenizer of the text model", local_option=LOCAL_TEXT_OPTION
        )
    if spec.get("pretrained") and isinstance(name, (str, os.PathLike)):
        require_hub_files(os.fspath(name), what="text model", local_option=LOCAL_TEXT_OPTION)


@contextlib.contextmanager
def torchvision_download(weights: object) -> Iterator[None]:
    """Run the download of torchvision's ``weights`` (a ``WeightsEnum`` member); a failed
    download is re-raised as :class:`HubUnavailableError` naming the URL, the file to place
    it at, and ``--pretrained``.

    Example:
        >>> with torchvision_download(None):
        ...     pass
    """
    try:
        yield
    except (URLError, ConnectionError, TimeoutError, socket.gaierror) as error:
        import torch

        url = str(getattr(weights, "url", ""))
        name = os.path.basename(urlparse(url).path)
        target = os.path.join(torch.hub.get_dir(), "checkpoints", name)
        raise HubUnavailableError(
            f"the pretrained weights {weights} are not in the torch hub cache and cannot be "
            f"downloaded ({getattr(error, 'reason', error)}). Download {url} where there is a "
            f"network and place it at {target} (or under $TORCH_HOME/hub/checkpoints/ on this "
            "machine), or train without --pretrained"
        ) from error
