"""Models by Hub repo id (against a Hub cache the tests build), push_to_hub, model cards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rvoslib import create_model
from rvoslib.hub import (
    HubModelNotFoundError,
    is_hub_name,
    push_to_hub,
    resolve_model_folder,
    split_hub_name,
)
from rvoslib.model_card import model_card


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_model(cache: Path, repo_id: str, folder: Path, revision: str = "main") -> Path:
    """Place ``folder``'s files in ``cache`` as the Hub client stores a download of
    ``repo_id`` at ``revision``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = f"{abs(hash((repo_id, revision))):040x}"[:40]
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def test_split_and_recognise_hub_names(tmp_path) -> None:
    assert split_hub_name("hf-hub:org/name@v2") == ("org/name", "v2")
    assert split_hub_name("org/name") == ("org/name", None)
    assert is_hub_name("hf-hub:org/name") and is_hub_name("org/name")
    assert not is_hub_name(tmp_path) and not is_hub_name("./org/name")


def test_a_cached_model_loads_by_repo_id_offline(tmp_path, hub_cache) -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    saved = model.save_pretrained(tmp_path / "saved")
    cache_model(hub_cache, "org/tiny", saved)
    other = create_model("tiny").eval()
    cache_model(hub_cache, "org/tiny", other.save_pretrained(tmp_path / "v2"), revision="v2")
    assert resolve_model_folder("org/tiny").is_dir()
    assert (resolve_model_folder("hf-hub:org/tiny") / "config.json").is_file()
    for name in ("org/tiny", "hf-hub:org/tiny"):
        loaded = resolve_model_folder(name)
        assert (loaded / "model.safetensors").read_bytes() == (
            saved / "model.safetensors"
        ).read_bytes()
    v2 = resolve_model_folder("org/tiny", revision="v2")
    assert (v2 / "model.safetensors").read_bytes() != (saved / "model.safetensors").read_bytes()


def test_a_missing_repo_is_named_with_the_offline_hint(hub_cache) -> None:
    with pytest.raises(HubModelNotFoundError) as error:
        resolve_model_folder("org/absent")
    message = str(error.value)
    assert "'org/absent'" in message and "HF_HUB_OFFLINE" in message
    assert "hf download org/absent" in message


def test_push_to_hub_without_a_token_sends_nothing(monkeypatch) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **kw: calls.append(kw))
    with pytest.raises(PermissionError, match="needs a Hugging Face token"):
        push_to_hub(create_model("tiny"), "org/tiny")
    assert calls == []
    with pytest.raises(ValueError, match="repo_id must look like 'org/name'"):
        push_to_hub(create_model("tiny"), "no-slash", token="x")


def test_push_to_hub_uploads_the_saved_folder(monkeypatch) -> None:
    import huggingface_hub

    uploaded: dict = {}

    class FakeApi:
        def __init__(self, token):
            uploaded["token"] = token

        def create_repo(self, repo_id, private, exist_ok):
            uploaded["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, commit_message, revision):
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            return "https://huggingface.co/org/tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = push_to_hub(create_model("tiny"), "org/tiny", token="secret", private=True)
    assert url.endswith("/commit/abc")
    assert uploaded["token"] == "secret" and uploaded["repo"] == ("org/tiny", True, True)
    assert {"config.json", "model.safetensors"} <= set(uploaded["files"])


def test_model_card_metadata_reads_back_with_huggingface_hub(tmp_path) -> None:
    from huggingface_hub import ModelCard

    text = model_card(
        {"architecture": "referformer"},
        metrics={"J": 0.5, "F": 0.6, "JF": 0.55},
        dataset="ref-davis17",
        source={
            "name": "referformer",
            "repository": "wjn922/ReferFormer",
            "license": "apache-2.0",
            "file": "r50.pth",
            "sha256": "ab12",
        },
        recipe={"trainer": {"lr": 1e-4}},
    )
    (tmp_path / "README.md").write_text(text)
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "rvoslib" and data["license"] == "apache-2.0"
    assert data["datasets"] == ["ref-davis17"]
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("J", 0.5), ("F", 0.6), ("JF", 0.55)
    }  # fmt: skip
    assert "arxiv.org/abs/2201.00487" in card.text and "r50.pth" in card.text


def test_model_card_needs_an_architecture() -> None:
    with pytest.raises(ValueError, match="config needs an 'architecture' entry"):
        model_card({"name": "x"})


def test_from_pretrained_and_create_model_take_hub_names(tmp_path, hub_cache) -> None:
    from rvoslib import RVOSModel, SegmentationModel

    torch.manual_seed(0)
    model = create_model("tiny").eval()
    cache_model(hub_cache, "org/tiny", model.save_pretrained(tmp_path / "saved"))
    frames = torch.rand(1, 2, 3, 64, 64)
    tokens = model.tokenize(["the red circle"])
    expected = model(frames, tokens["input_ids"], tokens["attention_mask"])
    for loaded in (
        RVOSModel.from_pretrained("org/tiny"),
        SegmentationModel.from_pretrained("hf-hub:org/tiny"),
        create_model("hf-hub:org/tiny"),
        create_model(str(tmp_path / "saved")),
    ):
        out = loaded.eval()(frames, tokens["input_ids"], tokens["attention_mask"])
        assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="pass no overrides"):
        create_model("hf-hub:org/tiny", fusion={"num_heads": 2})
    with pytest.raises(HubModelNotFoundError, match="'org/other'"):
        RVOSModel.from_pretrained("org/other")


def test_saved_folders_carry_a_model_card(tmp_path) -> None:
    from huggingface_hub import ModelCard

    folder = create_model("mttr-tiny").save_pretrained(tmp_path / "m")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "rvoslib" and "mttr" in card.data.tags
    assert "arxiv.org/abs/2111.14821" in card.text
    custom = create_model("tiny").save_pretrained(tmp_path / "c", card="# mine\n")
    assert (custom / "README.md").read_text() == "# mine\n"


def test_trainer_checkpoints_carry_the_run_metrics_in_their_card(tmp_path) -> None:
    from huggingface_hub import ModelCard

    from rvoslib.data import DataConfig, build_datasets
    from rvoslib.training import Trainer, TrainerConfig

    data = DataConfig(size=32, num_frames=2, train_videos=4, val_videos=1, val_frames=2)
    train, val = build_datasets(data, seed=0)
    config = TrainerConfig(epochs=1, batch_size=4, progress=False, device="cpu",
                           output_dir=str(tmp_path / "run"), tensorboard=False)  # fmt: skip
    trainer = Trainer(create_model("tiny"), train, val, config,
                      run_info={"data": data.to_dict()})  # fmt: skip
    history = trainer.fit()
    card = ModelCard.load(tmp_path / "run" / "last" / "README.md")
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values["JF"] == pytest.approx(history[-1]["JF"])
    assert card.data.datasets == ["synthetic"]
