"""The conversion front end: safe loading of original files, convert_checkpoint, load_checkpoint."""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json

import numpy as np
import pytest
import torch
from _convert_helpers import (
    DROPPED,
    NAME,
    convert_tiny,
    original_file,
    original_state,
    tiny_converter,
    tiny_model,
)

import rvoslib
from rvoslib.convert import (
    CONVERTERS,
    Conversion,
    UnexpectedKeysError,
    UnsafeCheckpointError,
    convert_checkpoint,
    convert_state_dict,
    detect_source,
    load_checkpoint,
    load_original_checkpoint,
)
from rvoslib.convert.core import CONVERSION_FILE, load_tokenizer
from rvoslib.convert.safe_load import default_safe_globals, resolve_global, unwrap_state_dict
from rvoslib.models import HashTokenizer, RVOSModel
from rvoslib.models.saving import save_model

__all__ = ["original_file", "tiny_converter", "tiny_model"]  # fixtures used here


class _Payload:
    """Unpickling it would create ``marker`` (it must never be unpickled)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _word_tokenizer(words: list[str]):
    """A Hugging Face fast tokenizer of whole words, built offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")


# ---------------------------------------------------------------------------------- safe load
@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: {"model_state_dict": s, "epoch": 1, "optimizer_state_dict": {"state": {}}},
        lambda s: {
            "model": s,
            "args": argparse.Namespace(backbone="video_swin_t", lr=1e-4),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
            "lr_scheduler": {"milestones": collections.Counter([3, 5]), "last_epoch": 2},
            "epoch": 5,
        },
        lambda s: {"state_dict": s, "best_mAP": np.float64(0.44), "arr": np.zeros(2)},
        lambda s: s,
        lambda s: {"model_state_dict": {"module." + k: v for k, v in s.items()}},
    ],
    ids=["mttr", "referformer", "state_dict-numpy", "bare", "ddp"],
)
def test_load_original_checkpoint_unwraps(tmp_path, wrap) -> None:
    state = {"a.weight": torch.randn(2, 3), "b": torch.arange(3)}
    path = tmp_path / "checkpoint.pth"
    torch.save(wrap(state), path)
    loaded = load_original_checkpoint(path)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_code_in_a_checkpoint_is_never_run(tmp_path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_original_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "builtins.exec" in message
    assert "allow_globals=['builtins.exec']" in message and "--trust-global" in message
    assert error.value.names == ["builtins.exec"]
    assert not marker.exists()


def test_trusted_globals_are_allowed(tmp_path) -> None:
    path = tmp_path / "dated.pth"
    torch.save({"model": {"w": torch.ones(1)}, "when": datetime.date(2022, 3, 1)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"datetime\.date"):
        load_original_checkpoint(path)
    assert list(load_original_checkpoint(path, allow_globals=["datetime.date"])) == ["w"]
    assert list(load_original_checkpoint(path, allow_globals=[datetime.date])) == ["w"]


def test_default_safe_globals_name_numpy_1_and_2() -> None:
    names = {name for _, name in default_safe_globals()}
    assert {"argparse.Namespace", "numpy.core.multiarray.scalar"} <= names
    assert "numpy._core.multiarray.scalar" in names


def test_resolve_global_errors() -> None:
    assert resolve_global("datetime.date") is datetime.date
    assert resolve_global("collections.OrderedDict.fromkeys") == collections.OrderedDict.fromkeys
    with pytest.raises(ValueError, match=r"'module\.Name' strings, got 'date'"):
        resolve_global("date")
    with pytest.raises(ValueError, match=r"'no_such_module_xyz\.Thing': no importable module"):
        resolve_global("no_such_module_xyz.Thing")
    with pytest.raises(ValueError, match=r"'datetime\.no_such': no importable module"):
        resolve_global("datetime.no_such")


def test_missing_truncated_and_corrupt_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint file '.*nothing\.pth': not found"):
        load_original_checkpoint(tmp_path / "nothing.pth")
    with pytest.raises(FileNotFoundError, match="a folder, not a file"):
        load_original_checkpoint(tmp_path)
    whole = tmp_path / "whole.pth"
    torch.save({"model": {"w": torch.ones(100)}}, whole)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[:200])
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    for path in (truncated, junk):
        with pytest.raises(ValueError, match="truncated or corrupt") as error:
            load_original_checkpoint(path)
        assert f"cannot read checkpoint {str(path)!r}" in str(error.value)


def test_unwrap_errors() -> None:
    with pytest.raises(ValueError, match=r"'f\.pth' holds a list, expected a dict"):
        unwrap_state_dict([1], "f.pth")
    with pytest.raises(ValueError, match=r"holds no model state dict: .* got keys 'epoch', 'x'"):
        unwrap_state_dict({"epoch": 1, "x": 2}, "f.pth")
    with pytest.raises(ValueError, match=r"got keys none"):
        unwrap_state_dict({}, "f.pth")
    with pytest.raises(ValueError, match=r"entry 'n' is a int, expected a tensor"):
        unwrap_state_dict({"model": {"w": torch.ones(1), "n": 3}}, "f.pth")


# ---------------------------------------------------------------------------------- convert
def test_convert_checkpoint_round_trip(tiny_converter, tiny_model, original_file, tmp_path):
    lines: list[str] = []
    out = convert_checkpoint(original_file, NAME, tmp_path / "converted", log=lines.append)
    assert lines[0] == f"{NAME}: size=tiny; 1 original key(s) dropped"
    assert lines[-1] == f"wrote {out}"
    record = json.loads((out / CONVERSION_FILE).read_text())
    assert record["sha256"] == hashlib.sha256(original_file.read_bytes()).hexdigest()
    assert record["source_file"] == "checkpoint.pth" and record["converter"] == NAME
    assert record["dropped"] == [DROPPED] and record["variant"] == {"size": "tiny"}
    assert record["notes"] == ["converted by the test converter"]
    assert record["tokenizer"] == "hash (built in)" and record["rvoslib_version"]
    model = RVOSModel.from_pretrained(out).eval()
    frames, ids = torch.randn(1, 2, 3, 32, 32), model.tokenize(["a dog"])["input_ids"]
    assert torch.equal(model(frames, ids), tiny_model(frames, ids))
    assert not list(tmp_path.glob(".converted*"))  # no temporary folder left


def test_convert_without_tokenizer_warns(tiny_converter, tiny_model, tmp_path) -> None:
    def convert(state):
        conversion = convert_tiny(state)
        conversion.config = conversion.config.replace(text_encoder={"tokenizer": None})
        return conversion

    CONVERTERS.register("test-tiny-hub", convert)
    try:
        path = tmp_path / "c.pth"
        torch.save({"model": original_state(tiny_model)}, path)
        with pytest.warns(UserWarning, match=r"without tokenizer files .* --tokenizer PATH"):
            out = convert_checkpoint(path, "test-tiny-hub", tmp_path / "out")
        model = RVOSModel.from_pretrained(out)
        ids = torch.tensor([[5, 6, 7]])
        assert model.eval()(torch.randn(1, 1, 3, 32, 32), ids).shape == (1, 1, 1, 32, 32)
        with pytest.raises(FileNotFoundError, match=r"the tokenizer of folder .*out"):
            model.tokenize(["a dog"])
        tokenizer_dir = tmp_path / "tokenizer"
        tokenizer_dir.mkdir()
        HashTokenizer(vocab_size=4096).save_pretrained(tokenizer_dir)
        out = convert_checkpoint(path, "test-tiny-hub", tmp_path / "out2", tokenizer=tokenizer_dir)
        assert json.loads((out / CONVERSION_FILE).read_text())["tokenizer"] == str(tokenizer_dir)
        assert RVOSModel.from_pretrained(out).tokenize(["a dog"])["input_ids"].shape == (1, 4)
        _word_tokenizer(["[UNK]", "[PAD]", "a", "dog"]).save_pretrained(tmp_path / "words")
        out = convert_checkpoint(
            path, "test-tiny-hub", tmp_path / "out3", tokenizer=tmp_path / "words"
        )
        assert (out / "tokenizer.json").is_file()
        tokens = RVOSModel.from_pretrained(out).tokenize(["a dog"])
        assert tokens["input_ids"].tolist() == [[2, 3]]
    finally:
        CONVERTERS.unregister("test-tiny-hub")


def test_load_tokenizer_checks(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"--tokenizer '.*nowhere': not a folder"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"holds no tokenizer file \(expected one of"):
        load_tokenizer(tmp_path)
    (tmp_path / "big").mkdir()
    HashTokenizer(vocab_size=9000).save_pretrained(tmp_path / "big")
    with pytest.raises(ValueError, match=r"has 9000 tokens, more than the 4096"):
        load_tokenizer(tmp_path / "big", vocab_size=4096)
    _word_tokenizer(["[UNK]", "[PAD]", "a", "dog"]).save_pretrained(tmp_path / "words")
    tokenizer = load_tokenizer(tmp_path / "words", vocab_size=4096)
    assert tokenizer("a dog")["input_ids"] == [2, 3]


def test_out_folder_rules(tiny_converter, original_file, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"--out '.*out' exists and is not empty; pass --over"):
        convert_checkpoint(original_file, NAME, out)
    assert (out / "keep.txt").read_text() == "mine"
    convert_checkpoint(original_file, NAME, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out '.*file' is a file, expected a folder"):
        convert_checkpoint(original_file, NAME, tmp_path / "file")
    with pytest.raises(ValueError, match=r"holds the checkpoint .* would delete the checkpoint"):
        convert_checkpoint(original_file, NAME, original_file.parent, overwrite=True)
    assert original_file.is_file()


def test_a_failed_conversion_keeps_the_old_folder(tiny_converter, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"foreign.key": torch.ones(1)}}, bad)
    with pytest.raises(UnexpectedKeysError, match=r"'foreign\.key'.*--from test-tiny"):
        convert_checkpoint(bad, NAME, out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"


def test_converted_state_must_fit_the_model(tiny_model) -> None:
    state = original_state(tiny_model)

    def missing(s):
        conversion = convert_tiny(s)
        conversion.state_dict.pop(next(iter(conversion.state_dict)))
        conversion.state_dict["extra.weight"] = torch.ones(1)
        return conversion

    def reshaped(s):
        conversion = convert_tiny(s)
        key = next(iter(conversion.state_dict))
        conversion.state_dict[key] = torch.ones(7, 7)
        return conversion

    first = next(iter(convert_tiny(state).state_dict))
    for name, converter in (("test-missing", missing), ("test-reshaped", reshaped)):
        CONVERTERS.register(name, converter)
    try:
        with pytest.raises(ValueError) as error:
            convert_state_dict(state, "test-missing")
        message = str(error.value)
        assert f"1 model keys missing from the conversion: {first}" in message
        assert "1 converted keys the model does not have: extra.weight" in message
        assert "bug of the converter" in message
        with pytest.raises(ValueError, match=rf"shapes differ: {first} \(7, 7\) converted"):
            convert_state_dict(state, "test-reshaped")
    finally:
        CONVERTERS.unregister("test-missing")
        CONVERTERS.unregister("test-reshaped")
    with pytest.raises(KeyError, match="no-such-system"):
        convert_state_dict(state, "no-such-system")


def test_convert_state_dict_returns_model_and_conversion(tiny_converter, tiny_model) -> None:
    model, conversion = convert_state_dict(original_state(tiny_model), NAME)
    assert isinstance(conversion, Conversion) and not model.training
    assert conversion.dropped == [DROPPED]
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in model.state_dict().items())


def test_detect_source(tiny_converter, tiny_model) -> None:
    state = original_state(tiny_model)
    assert detect_source(state) == NAME
    with pytest.raises(ValueError, match=rf"no converter accepts the checkpoint \(.*{NAME}: "):
        detect_source({"foreign": torch.ones(1)})
    CONVERTERS.register("test-twin", convert_tiny)
    try:
        with pytest.raises(ValueError, match=rf"fits several converters \({NAME}, test-twin\)"):
            detect_source(state)
    finally:
        CONVERTERS.unregister("test-twin")


def test_convert_checkpoint_detects_the_source(tiny_converter, original_file, tmp_path):
    lines: list[str] = []
    convert_checkpoint(original_file, None, tmp_path / "out", log=lines.append)
    assert lines[0] == f"detected checkpoint of {NAME!r}"


# ---------------------------------------------------------------------------------- loading
def test_load_checkpoint_folder_and_file(tiny_converter, tiny_model, original_file, tmp_path):
    folder = tiny_model.save_pretrained(tmp_path / "folder")
    assert isinstance(load_checkpoint(folder), RVOSModel)
    with pytest.raises(ValueError, match=r"--from test-tiny converts an original checkpoint file"):
        load_checkpoint(folder, NAME)
    lines: list[str] = []
    model = load_checkpoint(original_file, NAME, log=lines.append, cls=RVOSModel)
    assert "on the fly" in lines[0] and str(original_file) in lines[0]
    frames = torch.randn(1, 2, 3, 32, 32)
    ids = model.tokenize(["a dog"])["input_ids"]
    assert torch.equal(model.eval()(frames, ids), tiny_model(frames, ids))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"--checkpoint '.*absent\.pth': no such file"):
        load_checkpoint(tmp_path / "absent.pth")


def test_load_checkpoint_needs_a_tokenizer(tiny_model, tmp_path) -> None:
    def convert(state):
        conversion = convert_tiny(state)
        conversion.config = conversion.config.replace(text_encoder={"tokenizer": None})
        return conversion

    CONVERTERS.register("test-tiny-hub", convert)
    try:
        path = tmp_path / "c.pth"
        torch.save({"model": original_state(tiny_model)}, path)
        with pytest.raises(ValueError, match=r"no tokenizer for the converted model .* --tok"):
            load_checkpoint(path, "test-tiny-hub", log=lambda line: None)
    finally:
        CONVERTERS.unregister("test-tiny-hub")


def test_save_model_extra_files(tmp_path) -> None:
    model = rvoslib.create_model("tiny")
    folder = save_model(model, tmp_path / "m", extra_files={"notes.txt": "hello"})
    assert (folder / "notes.txt").read_text() == "hello"
    for name in ("config.json", "../x.txt"):
        with pytest.raises(ValueError, match=rf"plain file names .* got {name!r}"):
            save_model(model, tmp_path / "n", extra_files={name: "x"})
