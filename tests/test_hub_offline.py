"""Hub models that are neither local nor reachable fail within seconds, naming the model id
and the ways out (rvoslib._hub)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from rvoslib import _hub
from rvoslib.cli import main
from tests._davis_mini import require_davis_mini

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "hub"


def test_offline_env_names_the_model_and_the_ways_out(empty_cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(_hub.HubUnavailableError) as error:
        _hub.require_hub_files("org/missing", what="text model", local_option="--text PATH")
    message = str(error.value)
    assert "'org/missing'" in message and "HF_HUB_OFFLINE is set" in message
    assert "--text PATH" in message and "hf download org/missing" in message


def test_unreachable_hub_fails_within_seconds(empty_cache, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", CLOSED)
    started = time.perf_counter()
    with pytest.raises(_hub.HubUnavailableError, match="127.0.0.1:9"):
        _hub.require_hub_files("org/missing")
    assert time.perf_counter() - started < _hub.PROBE_TIMEOUT + 1


def test_local_folders_and_cached_models_pass(tmp_path, empty_cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hub.require_hub_files(str(tmp_path))  # a local folder
    snapshot = empty_cache / "models--org--cached" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (empty_cache / "models--org--cached" / "refs").mkdir()
    (empty_cache / "models--org--cached" / "refs" / "main").write_text("abc")
    _hub.require_hub_files("org/cached")


def test_hub_is_offline_reads_both_variables(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert not _hub.hub_is_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "true")
    assert _hub.hub_is_offline()


def test_a_failed_torchvision_download_names_the_url_and_file(tmp_path, monkeypatch) -> None:
    from urllib.error import URLError

    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    weights = SimpleNamespace(url="https://example.invalid/models/resnet-abc.pth")
    with pytest.raises(_hub.HubUnavailableError) as error, _hub.torchvision_download(weights):
        raise URLError("[Errno -2] Name or service not known")
    message = str(error.value)
    assert str(tmp_path / "checkpoints" / "resnet-abc.pth") in message
    assert weights.url in message and "--pretrained" in message
    # other errors pass through unchanged
    with pytest.raises(ValueError, match="other"), _hub.torchvision_download(weights):
        raise ValueError("other")


def test_rvos_train_with_a_hub_text_model_offline_fails_fast(tmp_path, monkeypatch, capsys):
    root = require_davis_mini()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    # as the README's command: davis-mini has no train split, and the text model is named first
    argv = ["train", "--preset", "seed-r50", "--dataset", "davis", "--root", str(root),
            "--out", str(tmp_path / "run"), "--device", "cpu"]  # fmt: skip
    assert main(argv) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert "'bert-base-uncased'" in err and "--model.text_encoder.model_name_or_path" in err
    assert not (tmp_path / "run").exists()


def test_text_encoder_specs_are_checked_before_any_data(empty_cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = {"name": "huggingface", "model_name_or_path": "org/text"}
    with pytest.raises(
        _hub.HubUnavailableError, match="the tokenizer of the text model 'org/text'"
    ):
        _hub.require_text_encoder_files(spec)
    with pytest.raises(_hub.HubUnavailableError, match="tokenizer of the text model 'org/tok'"):
        _hub.require_text_encoder_files({**spec, "tokenizer": "org/tok"})
    with pytest.raises(_hub.HubUnavailableError, match="the text model 'org/text'"):
        _hub.require_text_encoder_files({**spec, "tokenizer": "hash", "pretrained": True})
    _hub.require_text_encoder_files({**spec, "tokenizer": "hash"})  # nothing from the Hub
    _hub.require_text_encoder_files({"name": "hash_bag", "model_name_or_path": "org/text"})
    _hub.require_text_encoder_files(None)
