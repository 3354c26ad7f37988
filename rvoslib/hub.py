"""Models on the Hugging Face Hub: load by repo id, push a model folder.

``SegmentationModel.from_pretrained`` and ``create_model`` accept a local folder, a Hub repo
id (``"org/name"``, with ``revision=``) or ``"hf-hub:org/name"``; the files go through
``huggingface_hub``'s cache, so ``HF_HUB_OFFLINE=1`` loads what was downloaded once. A repo id
that does not exist or cannot be reached is named within seconds, with the offline hint.

Example:
    >>> split_hub_name("hf-hub:org/model@v1")
    ('org/model', 'v1')
    >>> is_hub_name("./runs/best"), is_hub_name("org/model"), is_hub_name("hf-hub:org/model")
    (False, True, True)

A name like ``runs/best`` is a local folder when it exists and a Hub id otherwise (as in
``transformers``); ``./runs/best`` is always local.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rvoslib._hub import _probe, hub_is_offline

__all__ = [
    "HUB_PREFIX",
    "HubModelNotFoundError",
    "is_hub_name",
    "push_to_hub",
    "resolve_model_folder",
    "split_hub_name",
]

#: The prefix that marks a Hub repo id (``create_model("hf-hub:org/name")``), as in timm.
HUB_PREFIX = "hf-hub:"
#: The files of a model folder (weights, config, tokenizer, card, conversion record).
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md", "merges.txt"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubModelNotFoundError(FileNotFoundError):
    """A Hub model id that does not exist, is not cached offline, or cannot be reached."""


def split_hub_name(name: str) -> tuple[str, str | None]:
    """``"hf-hub:org/name@rev"`` -> ``("org/name", "rev")``; the prefix and revision are
    optional."""
    name = name[len(HUB_PREFIX) :] if name.startswith(HUB_PREFIX) else name
    repo_id, _, revision = name.partition("@")
    return repo_id, revision or None


def is_hub_name(name: str | os.PathLike) -> bool:
    """Whether ``name`` names a Hub repo (``hf-hub:`` prefix, or ``org/name`` that is not an
    existing local path)."""
    name = os.fspath(name)
    if name.startswith(HUB_PREFIX):
        return True
    return bool(_REPO_ID.match(split_hub_name(name)[0])) and not os.path.exists(name)


def resolve_model_folder(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a model: ``name_or_path`` itself, or the Hub cache's snapshot.

    Args:
        name_or_path: A local folder, ``"org/name"`` or ``"hf-hub:org/name[@revision]"``.
        revision: A branch, tag or commit (overrides ``@revision``).

    Raises:
        HubModelNotFoundError: the repo does not exist, or it is not cached and the Hub
            cannot be used (``HF_HUB_OFFLINE`` or no network); names the id and the hint.
    """
    if not is_hub_name(name_or_path):
        return Path(name_or_path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, named_revision = split_hub_name(os.fspath(name_or_path))
    revision = revision or named_revision
    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    offline = hub_is_offline()
    reason = "HF_HUB_OFFLINE is set" if offline else None
    if not offline:
        from huggingface_hub import constants

        reason = _probe(constants.ENDPOINT)
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=MODEL_FILES,
            local_files_only=reason is not None,
            library_name="rvoslib",
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise HubModelNotFoundError(
            f"the Hub has no model {where} (or it is private: log in with `hf auth login`), "
            f"and there is no local folder {os.fspath(name_or_path)!r}"
        ) from error
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        raise HubModelNotFoundError(
            f"the model {where} is not in the Hugging Face cache and the Hub cannot be used "
            f"({reason or error}); download it once where there is a network "
            f"(`hf download {repo_id}`, or load it once with rvoslib), then set "
            f"HF_HUB_OFFLINE=1, or pass a local folder (there is no folder "
            f"{os.fspath(name_or_path)!r})"
        ) from error
    return Path(folder)


def push_to_hub(
    model: Any,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload rvoslib model",
) -> str:
    """Save ``model`` (config, weights, tokenizer, model card) and upload it to ``repo_id``.

    Args:
        model: A :class:`~rvoslib.models.base.SegmentationModel`.
        repo_id: ``"org/name"`` (created when missing).
        token: A Hugging Face token (default: the logged-in one, ``HF_TOKEN``).
        private: Create the repo private.
        revision: The branch to push to.
        commit_message: The commit's message.

    Returns:
        The URL of the commit.

    Raises:
        PermissionError: no token; nothing is sent.
        ValueError: ``repo_id`` is not ``org/name``.
    """
    if not _REPO_ID.match(repo_id):
        raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
    from huggingface_hub import HfApi, get_token

    token = token or get_token()
    if not token:
        raise PermissionError(
            f"push_to_hub({repo_id!r}) needs a Hugging Face token: run `hf auth login`, set "
            "HF_TOKEN, or pass token=...; nothing was sent"
        )
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="rvoslib-push-") as tmp:
        folder = model.save_pretrained(Path(tmp) / "model")
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
        )
    return str(getattr(commit, "commit_url", commit))
