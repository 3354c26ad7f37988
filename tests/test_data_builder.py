"""DataConfig, the DATASETS registry, build_datasets and build_eval_dataset over every kind."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from _davis_mini import require_davis_mini
from torch.utils.data import Subset

from rvoslib.data import (
    DATASETS,
    SYNTHETIC_ATTRIBUTES,
    DataConfig,
    DatasetBuilder,
    RefDAVISDataset,
    SyntheticRVOSDataset,
    SyntheticVOSDataset,
    build_datasets,
    build_eval_dataset,
    dataset_names,
    held_out_split,
    list_datasets,
    register_dataset,
)
from rvoslib.data.vos import FirstFrameMaskDataset

DATA_PACKAGE = Path(__file__).resolve().parents[1] / "rvoslib" / "data"


def _same_items(left, right) -> None:
    assert len(left) == len(right)
    for a, b in zip((left[0], left[len(left) - 1]), (right[0], right[len(right) - 1])):
        assert sorted(a) == sorted(b)
        for key, value in a.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, b[key]), key
            elif isinstance(value, np.ndarray):
                assert np.array_equal(value, b[key]), key
            else:
                assert value == b[key], key


def test_list_datasets_and_registry() -> None:
    names = ["a2d", "davis", "jhmdb", "refcoco", "refcoco+", "refcoco-all", "refcocog"]
    names += ["refcocog-google", "synthetic", "youtube-vos", "ytvos", "ytvos+refcoco"]
    assert list_datasets() == names == dataset_names()
    assert list_datasets("*vos") == ["youtube-vos", "ytvos"] and list_datasets("x*") == []
    assert isinstance(DATASETS.get("davis"), DatasetBuilder)
    assert DATASETS.get("jhmdb").train is None and "evaluation only" in DATASETS.describe("jhmdb")
    assert SYNTHETIC_ATTRIBUTES == ("color", "shape", "motion", "position")
    assert DataConfig().attributes == list(SYNTHETIC_ATTRIBUTES)


def test_unknown_dataset_lists_the_valid_ones() -> None:
    message = r"unknown dataset 'kitti'; registered datasets: a2d, davis, jhmdb, refcoco, "
    with pytest.raises(KeyError, match=message):
        build_datasets(DataConfig(dataset="kitti"))
    with pytest.raises(KeyError, match=message):
        build_eval_dataset(DataConfig(dataset="kitti"))


def test_register_dataset_evaluates_on_the_held_out_set() -> None:
    @register_dataset("tiny-test", description="two videos")
    def tiny(config: DataConfig, seed: int):
        return SyntheticRVOSDataset(2, 2, 32, seed=seed), SyntheticRVOSDataset(1, 2, 32, seed=9)

    try:
        assert "tiny-test" in list_datasets("tiny*") and DATASETS.describe("tiny-test")
        assert len(build_eval_dataset(DataConfig(dataset="tiny-test"))) == 1
        with pytest.raises(ValueError, match=r"dataset 'tiny-test' has no evaluation size"):
            build_eval_dataset(DataConfig(dataset="tiny-test", size=None))
        with pytest.raises(ValueError, match="dataset 'tiny-test' is already registered"):
            register_dataset("tiny-test")(lambda config, seed: (None, None))
    finally:
        DATASETS.unregister("tiny-test")
    assert "tiny-test" not in list_datasets()


def test_data_config_checks() -> None:
    with pytest.raises(ValueError, match=r"unknown attributes \['size'\]; valid attributes: color"):
        DataConfig(attributes=["color", "size"])
    with pytest.raises(ValueError, match="attributes must name at least one of color, shape"):
        DataConfig(attributes=[])
    with pytest.raises(ValueError, match=r"size must be >= 32 \(or None to disable\), got 16"):
        DataConfig(size=16)
    with pytest.raises(ValueError, match="val_fraction must be > 0 and < 1, got 1.0"):
        DataConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match=r"task must be one of \('rvos', 'vos'\), got 'vqa'"):
        DataConfig(task="vqa")
    assert DataConfig(size=None).size is None


def test_training_needs_a_size_and_a_trainable_dataset() -> None:
    with pytest.raises(ValueError, match=r"size=None .* training needs an int size \(--size\)"):
        build_datasets(DataConfig(size=None))
    with pytest.raises(ValueError, match=r"'jhmdb' is for evaluation only .* on: a2d, davis, "):
        build_datasets(DataConfig(dataset="jhmdb", root="."))


def test_root_and_task_errors() -> None:
    for name in ("davis", "ytvos", "a2d", "jhmdb"):
        with pytest.raises(ValueError, match=f"root is required for dataset '{name}'"):
            build_eval_dataset(DataConfig(dataset=name))
    with pytest.raises(ValueError, match=r"'youtube-vos' has the task\(s\) vos, got task 'rvos'"):
        build_eval_dataset(DataConfig(dataset="youtube-vos", root="."))
    with pytest.raises(ValueError, match=r"'youtube-vos' has the task\(s\) vos, got task 'rvos'"):
        build_datasets(DataConfig(dataset="youtube-vos", root="."))
    for name in ("a2d", "jhmdb", "ytvos"):
        with pytest.raises(ValueError, match=f"'{name}' has the task.* rvos, got task 'vos'"):
            build_eval_dataset(DataConfig(dataset=name, task="vos", root="."))


@pytest.mark.parametrize("task", ["rvos", "vos"])
def test_synthetic_eval_is_the_held_out_set(task: str) -> None:
    config = DataConfig(task=task, train_videos=2, val_videos=3, val_frames=2, size=32)
    _, val = build_datasets(config, seed=5)
    evaluation = build_eval_dataset(config, seed=5)
    assert isinstance(evaluation, SyntheticVOSDataset if task == "vos" else SyntheticRVOSDataset)
    _same_items(val, evaluation)
    native = build_eval_dataset(DataConfig(task=task, val_videos=1, val_frames=2, size=None))
    assert native[0]["frames"].shape == (2, 3, 64, 64)
    assert ("first_mask" in native[0]) == (task == "vos")


def test_synthetic_eval_options() -> None:
    config = DataConfig(
        task="vos", val_videos=2, val_frames=3, size=32, zero_first_mask=True, flow=True,
        attributes=["color"],
    )  # fmt: skip
    item = build_eval_dataset(config)[0]
    assert not item["first_mask"].any() and item["flow_forward"].shape == (2, 2, 32, 32)
    long = build_eval_dataset(DataConfig(val_videos=1, size=32, long_expressions=True))[0]
    assert "short_expression" in long


def test_davis_eval_rvos_and_vos() -> None:
    root = str(require_davis_mini())
    dataset = build_eval_dataset(DataConfig(dataset="davis", root=root, size=None))
    assert isinstance(dataset, RefDAVISDataset) and dataset.split == "val"
    assert dataset.transform is None and dataset.num_frames is None
    resized = build_eval_dataset(DataConfig(dataset="davis", root=root, size=64))
    assert resized.transform is not None and resized.num_frames is None
    vos = build_eval_dataset(DataConfig(dataset="davis", task="vos", root=root, size=None))
    assert isinstance(vos, FirstFrameMaskDataset) and len(vos) <= len(dataset)
    config = DataConfig(dataset="davis", root=root, size=64, train_split="val")
    _same_items(build_datasets(config)[1], resized)


def test_ytvos_eval_reads_the_valid_split(tmp_path: Path) -> None:
    from test_data_ytvos import _write_ytvos

    _write_ytvos(tmp_path)
    dataset = build_eval_dataset(DataConfig(dataset="ytvos", root=str(tmp_path), size=None))
    assert dataset.split == "valid" and len(dataset) == 3 and dataset.transform is None
    train, val = build_datasets(
        DataConfig(dataset="ytvos", root=str(tmp_path), val_fraction=0.4, num_frames=2)
    )
    assert isinstance(train, Subset) and list(val.indices) == [0] and len(train) == 2


def test_youtube_vos_eval_is_the_held_out_share(tmp_path: Path) -> None:
    from test_data_youtube_vos import write_fixture

    write_fixture(tmp_path)
    config = DataConfig(dataset="youtube-vos", task="vos", root=str(tmp_path), size=None)
    dataset = build_eval_dataset(config)
    assert isinstance(dataset, Subset) and list(dataset.indices) == [0]
    assert dataset[0]["first_mask"].ndim == 2
    train, val = build_datasets(DataConfig(**{**config.to_dict(), "size": 32}))
    assert list(val.indices) == [0] and list(train.indices) == list(range(1, len(train) + 1))


def test_a2d_and_jhmdb_eval(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    from _a2d_fixtures import make_a2d, make_jhmdb

    from rvoslib.data import A2DSentencesDataset, JHMDBSentencesDataset

    a2d = build_eval_dataset(
        DataConfig(dataset="a2d", root=str(make_a2d(tmp_path / "a2d")), num_frames=3, size=None)
    )
    assert isinstance(a2d, A2DSentencesDataset) and a2d.split == "test"
    item = a2d[0]
    assert item["frames"].shape[0] == 3 and min(item["frames"].shape[-2:]) == 320
    jhmdb = build_eval_dataset(
        DataConfig(dataset="jhmdb", root=str(make_jhmdb(tmp_path / "jhmdb")), size=64)
    )
    assert isinstance(jhmdb, JHMDBSentencesDataset) and jhmdb.num_frames == 4
    assert min(jhmdb[0]["frames"].shape[-2:]) == 64


def test_missing_root_folder() -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build_eval_dataset(DataConfig(dataset="davis", root="/nonexistent/davis"))


def test_held_out_split() -> None:
    assert held_out_split(100, 0.05) == (range(5, 100), range(5))
    assert held_out_split(3, 0.05) == (range(1, 3), range(1))  # at least one held out


def test_data_never_imports_training_or_models() -> None:
    forbidden = ("rvoslib.training", "rvoslib.models", "rvoslib.cli", "rvoslib.evaluation")
    offenders = []
    for path in sorted(DATA_PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
    assert offenders == []
