"""``rvos convert`` and original checkpoint files given to ``rvos predict/export``."""

from __future__ import annotations

import datetime
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _convert_helpers import NAME, original_file, original_state, tiny_converter, tiny_model
from PIL import Image

from rvoslib.cli import main
from rvoslib.models import RVOSModel

__all__ = ["original_file", "tiny_converter", "tiny_model"]  # fixtures used here


def test_convert_writes_a_model_folder(tiny_converter, tiny_model, original_file, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert", "--from", NAME, str(original_file), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert f"{NAME}: size=tiny; 1 original key(s) dropped" in captured.err
    assert f"wrote {out}" in captured.err
    assert json.loads((out / "conversion.json").read_text())["converter"] == NAME
    model = RVOSModel.from_pretrained(out).eval()
    frames, ids = torch.randn(1, 2, 3, 32, 32), torch.tensor([[3, 9, 4]])
    assert torch.equal(model(frames, ids), tiny_model(frames, ids))


def test_convert_help_lists_the_converters(tiny_converter, capsys) -> None:
    assert main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    assert NAME in text and "--trust-global" in text and "--tokenizer" in text


def test_convert_errors(tiny_converter, original_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("x")
    assert main(["convert", "--from", NAME, str(original_file), "--out", str(out)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main(["convert", "--from", NAME, str(original_file), "--out", str(out),
                 "--overwrite"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["convert", "--from", "nope", str(original_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "rvos convert: error: argument --from: invalid choice: 'nope'" in err and NAME in err
    assert main(["convert", "--from", NAME, str(tmp_path / "no.pth"), "--out", "o"]) == 2
    assert "no.pth': not found" in capsys.readouterr().err
    assert main(["convert", "--from", NAME, str(original_file)]) == 2
    assert "arguments are required: out" in capsys.readouterr().err


def test_convert_trust_global(tiny_converter, tiny_model, tmp_path, capsys) -> None:
    path = tmp_path / "dated.pth"
    torch.save({"model": original_state(tiny_model), "when": datetime.date(2022, 1, 1)}, path)
    args = ["convert", "--from", NAME, str(path), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs the Python object(s) datetime.date" in err
    assert "--trust-global datetime.date" in err
    assert main([*args, "--trust-global", "datetime.date"]) == 0


def test_convert_warns_without_tokenizer(tiny_model, tmp_path, capsys) -> None:
    from _convert_helpers import convert_tiny

    from rvoslib.convert import CONVERTERS

    def convert(state):
        conversion = convert_tiny(state)
        conversion.config = conversion.config.replace(text_encoder={"tokenizer": None})
        return conversion

    CONVERTERS.register("test-tiny-hub", convert)
    try:
        path = tmp_path / "c.pth"
        torch.save({"model": original_state(tiny_model)}, path)
        out = tmp_path / "o"
        assert main(["convert", "--from", "test-tiny-hub", str(path), "--out", str(out)]) == 0
        assert "rvos convert: warning: " in capsys.readouterr().err
        assert main(["convert", "--from", "test-tiny-hub", str(path), "--out", str(out),
                     "--overwrite", "--tokenizer", str(tmp_path / "none")]) == 2  # fmt: skip
        assert "--tokenizer" in capsys.readouterr().err
    finally:
        CONVERTERS.unregister("test-tiny-hub")


@pytest.fixture
def video(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
            folder / f"{index:05d}.jpg"
        )
    return folder


def test_predict_converts_an_original_file(tiny_converter, original_file, video, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(["predict", "--checkpoint", str(original_file), "--from", NAME, "--video",
                 str(video), "--text", "a dog", "--out", str(out), "--size", "32",
                 "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "on the fly" in capsys.readouterr().err
    assert len(list((out / "0").glob("*.png"))) == 3


def test_predict_detects_the_source_and_refuses_from_with_a_folder(
    tiny_converter, tiny_model, original_file, video, tmp_path, capsys
):
    out = tmp_path / "pred"
    base = ["predict", "--video", str(video), "--text", "a dog", "--size", "32", "--no-progress"]
    assert main([*base, "--checkpoint", str(original_file), "--out", str(out)]) == 0
    assert f"detected checkpoint of {NAME!r}" in capsys.readouterr().err
    folder = tiny_model.save_pretrained(tmp_path / "folder")
    args = [*base, "--checkpoint", str(folder), "--from", NAME, "--out", str(tmp_path / "p2")]
    assert main(args) == 2
    assert "is a folder (an rvoslib model folder needs no --from)" in capsys.readouterr().err
    args = [*base, "--checkpoint", str(original_file), "--from", "nope", "--out", "p3"]
    assert main(args) == 2
    assert "--from must be one of" in capsys.readouterr().err


def test_export_takes_an_original_file(tiny_converter, original_file, tmp_path, capsys):
    out = tmp_path / "model.pt"
    code = main(["export", "--checkpoint", str(original_file), "--from", NAME, "--format",
                 "torchscript", "--out", str(out), "--frames", "2", "--height", "32",
                 "--width", "32"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


# ------------------------------------------------------------- the committed original fixtures
ROOT = Path(__file__).resolve().parents[1]
ORIGINALS = ROOT / "tests" / "data" / "originals"
SYSTEMS = ("losh", "mttr", "referformer", "soc")


def _fixture_io(system: str) -> tuple[dict, torch.Tensor]:
    """A fixture's inputs and the original code's referred logits (B, T, 1, H, W): from
    ``io.pt``, or ``inputs.pt`` and ``expected.pt`` (SOC)."""
    folder = ORIGINALS / system
    if (folder / "io.pt").is_file():
        io = torch.load(folder / "io.pt", weights_only=True)
        return io, io["logits"] if "logits" in io else io["chosen_logits"]
    inputs = torch.load(folder / "inputs.pt", weights_only=True)
    return inputs, torch.load(folder / "expected.pt", weights_only=True)["logits"]


def _fixture_systems() -> list[str]:
    from rvoslib.convert import CONVERTERS

    return [
        name
        for name in SYSTEMS
        if (ORIGINALS / name / "checkpoint.pth").is_file() and name in CONVERTERS
    ]


@pytest.mark.parametrize("system", _fixture_systems())
def test_convert_the_original_fixture(system, tmp_path, capsys) -> None:
    out = tmp_path / system
    checkpoint = ORIGINALS / system / "checkpoint.pth"
    assert main(["convert", "--from", system, str(checkpoint), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{system}: " in err and "without tokenizer files" in err  # no roberta-base offline
    io, expected = _fixture_io(system)
    model = RVOSModel.from_pretrained(out).eval()
    with torch.no_grad():
        logits = model(io["frames"], io["input_ids"], io["attention_mask"])
    assert (logits - expected).abs().max().item() <= 1e-4
    record = json.loads((out / "conversion.json").read_text())
    assert record["converter"] == system and record["source_file"] == "checkpoint.pth"
    video = tmp_path / "video"  # on the fly, without a tokenizer: refused with the fix
    video.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(video / "00000.jpg")
    assert main(["predict", "--checkpoint", str(checkpoint), "--from", system, "--video",
                 str(video), "--text", "a dog", "--out", str(tmp_path / "p")]) == 2  # fmt: skip
    assert "no tokenizer for the converted model" in capsys.readouterr().err


def _doc_one_liners() -> list[str]:
    text = (ROOT / "docs" / "published_checkpoints.rst").read_text()
    return re.findall(r'^\s*python -c "(.+)"$', text, re.M)


def test_the_docs_have_one_liners_for_each_fixture() -> None:
    covered = {
        re.search(r"originals/(\w+)/checkpoint", code).group(1) for code in _doc_one_liners()
    }
    assert set(_fixture_systems()) <= covered


@pytest.mark.parametrize("code", _doc_one_liners(), ids=lambda c: c.split("'")[1].split("/")[3])
def test_the_docs_one_liners_run_as_written(code, tmp_path, monkeypatch, capsys) -> None:
    fixture = re.search(r"'(tests/data/originals/[^']+/checkpoint\.pth)'", code).group(1)
    if not (ROOT / fixture).is_file():
        pytest.skip(f"{fixture} is not committed")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no tokenizer offline
        exec(compile(code, "<published_checkpoints.rst>", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[1:4] == ["max", "abs", "difference:"]
    assert float(printed[4]) <= 1e-4


@pytest.mark.parametrize("system", _fixture_systems())
def test_detection_on_the_original_fixtures(system) -> None:
    from rvoslib.convert import detect_source, load_original_checkpoint

    state = load_original_checkpoint(ORIGINALS / system / "checkpoint.pth")
    if system in ("mttr", "losh"):  # LoSh keeps MTTR's modules and names
        with pytest.raises(ValueError, match=r"fits several converters \(losh, mttr\)"):
            detect_source(state)
    else:
        assert detect_source(state) == system
