"""Names read from annotation files never make a path outside the output folder (issue 24).

Video names, expression ids, object ids and frame names come from files a user may have been
sent; each is checked to be a plain file name before any work, and every writer of prediction
files refuses a target outside its folder. ``rvos eval --predictions DIR`` writes nothing into
``DIR`` unless ``--out`` names it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _davis_mini import copy_davis_subset

from rvoslib import create_model
from rvoslib._paths import check_object_id, check_path_component, confined_path
from rvoslib.cli import main
from rvoslib.data import RefDAVISDataset, RefYouTubeVOSDataset
from rvoslib.data.expressions import load_meta_expressions, parse_refdavis_text
from rvoslib.data.youtube_vos import load_youtube_vos_meta
from rvoslib.metrics import RefDAVISWriter, write_davis_masks, write_ytvos_masks
from rvoslib.metrics.youtube_vos_submission import write_youtube_vos_masks

BAD_NAMES = [
    ("", "is empty"),
    (".", "is '.'"),
    ("..", "is '..'"),
    ("../x", "contains '/'"),
    ("a/b", "contains '/'"),
    ("..\\x", "contains '\\\\'"),
    ("/etc", "is absolute"),
    ("\\\\server\\x", "is absolute"),
    ("C:x", "starts with a drive"),
    ("a\x00b", "contains NUL"),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    create_model("tiny").save_pretrained(folder)
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _davis_with_video(davis_mini: Path, root: Path, name: str, frames: int = 2) -> Path:
    """A DAVIS copy whose video ``name`` (in the split and the expressions) is blackswan's
    frames at ``JPEGImages/480p/<name>`` and masks at ``Annotations/480p/<name>``."""
    copy_davis_subset(davis_mini, root, "blackswan", frames)
    for kind in ("JPEGImages", "Annotations"):
        (root / kind / "480p" / name).mkdir(parents=True, exist_ok=True)
        for path in (root / kind / "480p" / "blackswan").iterdir():
            shutil.copy(path, root / kind / "480p" / name / path.name)
    (root / "ImageSets" / "2017" / "val.txt").write_text(name + "\n")
    meta = json.loads((root / "meta_expressions.json").read_text())
    meta["videos"] = {name: meta["videos"]["blackswan"]}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    return root


def test_eval_refuses_a_video_name_that_leaves_out(checkpoint, davis_mini, tmp_path, capsys):
    # The reported case: video "../x" made `rvos eval --out OUT` write OUT/../x/<exp>/*.png.
    root = _davis_with_video(davis_mini, tmp_path / "data", "../x")
    out = tmp_path / "out"
    before = _files(tmp_path)
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--dataset", "davis", "--root", str(root),
         "--size", "32", "--protocol", "all", "--out", str(out), "--device", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "val.txt: video name '../x' is not a plain file name (contains '/')" in err
    assert not (tmp_path / "x").exists()
    assert _files(tmp_path) == before  # nothing written anywhere, OUT included


def test_eval_refuses_a_video_name_that_reaches_the_ground_truth(
    checkpoint, davis_mini, tmp_path, capsys
):
    # refer-davis writes OUT/anno_<k>/<video>: "../../x" from OUT = <root>/out is <root>/x,
    # the very folder read as frames and ground truth (masks read as frames).
    root = tmp_path / "data"
    copy_davis_subset(davis_mini, root, "blackswan", 2)
    (root / "x").mkdir()
    for path in (root / "Annotations" / "480p" / "blackswan").iterdir():
        shutil.copy(path, root / "x" / path.name)
    (root / "ImageSets" / "2017" / "val.txt").write_text("../../x\n")
    meta = json.loads((root / "meta_expressions.json").read_text())
    meta["videos"] = {"../../x": meta["videos"]["blackswan"]}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    before = _files(tmp_path)
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--root", str(root), "--size", "32",
         "--out", str(root / "out"), "--device", "cpu"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "val.txt: video name '../../x' is not a plain file name (contains '/')" in err
    assert _files(tmp_path) == before


@pytest.mark.parametrize(("name", "reason"), BAD_NAMES)
def test_check_path_component_names_the_source_the_entry_and_why(name, reason) -> None:
    expected = f"meta.json: video name {name!r} is not a plain file name ({reason})"
    with pytest.raises(ValueError) as caught:
        check_path_component(name, "video name", "meta.json")
    assert str(caught.value) == expected


@pytest.mark.parametrize("name", ["blackswan", "00000", "a..b", "...", ".hidden", "café", "0"])
def test_plain_names_pass(name) -> None:
    assert check_path_component(name, "video name", "meta.json") == name


def test_check_object_id() -> None:
    assert check_object_id("3", "object id", "f.json") == 3
    assert check_object_id(7, "object id", "f.json") == 7
    for value in ("../1", "1.5", True, None, ""):
        with pytest.raises(ValueError, match=rf"^f\.json: object id {re.escape(repr(value))} is"):
            check_object_id(value, "object id", "f.json")


def test_confined_path_refuses_dot_dot_and_symlinks_out(tmp_path) -> None:
    out = tmp_path / "out"
    assert confined_path(out, "v", "0", "00000.png") == out / "v" / "0" / "00000.png"
    with pytest.raises(ValueError, match=r"^w: path component '\.\.' is not a plain file name"):
        confined_path(out, "..", "x.png", source="w")
    out.mkdir()
    (out / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match=r"^w: .*link/x\.png' resolves to .*, outside the output"):
        confined_path(out, "link", "x.png", source="w")


def _meta(videos: dict) -> str:
    return json.dumps({"videos": videos})


GOOD_VIDEO = {"expressions": {"0": {"exp": "a swan", "obj_id": "1"}}, "frames": ["00000"]}


@pytest.mark.parametrize(
    ("videos", "message"),
    [
        ({"../../x": GOOD_VIDEO}, "video name '../../x' is not a plain file name (contains '/')"),
        (
            {"v": {"expressions": {"../0": {"exp": "a", "obj_id": "1"}}}},
            "expression id of video 'v' '../0' is not a plain file name (contains '/')",
        ),
        (
            {"v": {"expressions": {"..": {"exp": "a", "obj_id": "1"}}}},
            "expression id of video 'v' '..' is not a plain file name (is '..')",
        ),
        (
            {"v": {"expressions": {"0": {"exp": "a", "obj_id": "../1"}}}},
            "object id of expression '0' of video 'v' '../1' is not an integer",
        ),
        (
            {"v": {"expressions": {}, "frames": ["00000", "/etc/passwd"]}},
            "frame name of video 'v' '/etc/passwd' is not a plain file name (is absolute)",
        ),
        ({"v\x00": GOOD_VIDEO}, "video name 'v\\x00' is not a plain file name (contains NUL)"),
        ({"v": ["00000"]}, "video 'v' must hold {\"expressions\""),
        ({"v": {"expressions": {}, "frames": "00000"}}, "'frames' of video 'v' must be a list"),
        ({"v": {"expressions": {"0": "a swan"}}}, "expression '0' of video 'v' must be {\"exp\""),
    ],
)
def test_meta_expressions_names_and_layout_are_checked(tmp_path, videos, message) -> None:
    path = tmp_path / "meta_expressions.json"
    path.write_text(_meta(videos))
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}"):
        load_meta_expressions(path)


def test_meta_expressions_checks_every_entry_before_any_is_used(tmp_path) -> None:
    # the bad video comes last and belongs to no split: still refused before any work
    path = tmp_path / "meta_expressions.json"
    path.write_text(_meta({"a": GOOD_VIDEO, "b": GOOD_VIDEO, "../x": GOOD_VIDEO}))
    with pytest.raises(ValueError, match=r"video name '\.\./x' is not a plain file name"):
        load_meta_expressions(path)


def test_refdavis_dataset_refuses_a_bad_expression_file_entry(davis_mini, tmp_path) -> None:
    root = copy_davis_subset(davis_mini, tmp_path / "davis", "blackswan", 2)
    meta = json.loads((root / "meta_expressions.json").read_text())
    meta["videos"]["blackswan"]["expressions"]["../../../x"] = {"exp": "a swan", "obj_id": "1"}
    (root / "meta_expressions.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"meta_expressions\.json: expression id of video "):
        RefDAVISDataset(root)


def test_refdavis_text_files_name_file_and_line(tmp_path) -> None:
    path = tmp_path / "Davis17_annot1.txt"
    path.write_text('blackswan 1 "a swan"\n..\\x 1 "escape"\n')
    expected = f"{path}:2: video name '..\\\\x' is not a plain file name (contains '\\\\')"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        parse_refdavis_text(path)


def test_davis_split_file_names_are_checked(davis_mini, tmp_path) -> None:
    root = copy_davis_subset(davis_mini, tmp_path / "davis", "blackswan", 2)
    (root / "ImageSets" / "2017" / "val.txt").write_text("blackswan\n/tmp\n")
    split = root / "ImageSets" / "2017" / "val.txt"
    expected = f"{split}: video name '/tmp' is not a plain file name (is absolute)"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        RefDAVISDataset(root)


def _youtube_vos_meta(tmp_path: Path, videos: dict) -> Path:
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"videos": videos}))
    return path


def test_youtube_vos_meta_names_are_checked(tmp_path) -> None:
    path = _youtube_vos_meta(tmp_path, {"../v": {"objects": {"1": {"frames": ["00000"]}}}})
    with pytest.raises(ValueError, match=r"meta\.json: video name '\.\./v' is not a plain"):
        load_youtube_vos_meta(path)
    path = _youtube_vos_meta(tmp_path, {"v": {"objects": {"1": {"frames": ["00000", ".."]}}}})
    expected = f"{path}: frame name of object 1 of video 'v' '..' is not a plain file name"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}"):
        load_youtube_vos_meta(path)
    path = _youtube_vos_meta(tmp_path, {"v": {"objects": {"1/2": {"frames": ["00000"]}}}})
    with pytest.raises(ValueError, match=r"video 'v' has object id '1/2'; ids are integers"):
        load_youtube_vos_meta(path)


def _ytvos_root(tmp_path: Path) -> tuple[Path, Path]:
    """A Ref-YouTube-VOS root with video ``v`` (no frames) and the path of its meta.json."""
    root = tmp_path / "ytvos"
    (root / "meta_expressions" / "train").mkdir(parents=True)
    (root / "meta_expressions" / "train" / "meta_expressions.json").write_text(
        _meta({"v": GOOD_VIDEO})
    )
    (root / "train" / "JPEGImages" / "v").mkdir(parents=True)
    (root / "train" / "Annotations").mkdir(parents=True)
    return root, root / "train" / "meta.json"


def test_ref_youtube_vos_meta_json_object_ids_are_checked(tmp_path) -> None:
    root, meta = _ytvos_root(tmp_path)
    meta.write_text(json.dumps({"videos": {"v": {"objects": {"../1": {}}}}}))
    expected = f"{meta}: object id of video 'v' '../1' is not an integer"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        RefYouTubeVOSDataset(root, "train")
    (root / "meta_expressions" / "train" / "meta_expressions.json").write_text(
        _meta({"v": {**GOOD_VIDEO, "frames": ["00000", "../../00001"]}})
    )
    with pytest.raises(ValueError, match=r"frame name of video 'v' '\.\./\.\./00001' is not"):
        RefYouTubeVOSDataset(root, "train")


def test_a2d_and_jhmdb_video_ids_are_checked(tmp_path) -> None:
    pytest.importorskip("h5py")
    from _a2d_fixtures import make_a2d, make_jhmdb

    from rvoslib.data import A2DSentencesDataset, JHMDBSentencesDataset

    root = make_a2d(tmp_path / "a2d")
    videoset = root / "Release" / "videoset.csv"
    videoset.write_text(videoset.read_text() + "../../vidX,label,0,1,24,40,5,2,0\n")
    expected = f"{videoset}, line 5: video id '../../vidX' is not a plain file name"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}"):
        A2DSentencesDataset(root, "train")
    root = make_jhmdb(tmp_path / "jhmdb")
    text = root / "jhmdb_annotation.txt"
    text.write_text(text.read_text() + "..,a man waving\n")
    expected = f"{text}, line 4: video id '..' is not a plain file name (is '..')"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        JHMDBSentencesDataset(root)


def test_write_davis_masks_refuses_a_frame_name_with_dot_dot(tmp_path) -> None:
    out = tmp_path / "out" / "blackswan"
    masks = np.zeros((2, 4, 6), np.uint8)
    with pytest.raises(ValueError, match=r"^write_davis_masks: frame name '\.\./\.\./x' is not"):
        write_davis_masks(masks, out, ["00000", "../../x"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()
    assert [p.name for p in write_davis_masks(masks, out, ["00000", "00001"])] == [
        "00000.png",
        "00001.png",
    ]


def test_write_davis_masks_refuses_a_symlink_out_of_its_folder(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "00000.png").symlink_to(tmp_path / "victim.png")
    with pytest.raises(ValueError, match=r"^write_davis_masks: .* outside the output folder"):
        write_davis_masks(np.zeros((1, 4, 6), np.uint8), out, ["00000"])
    assert not (tmp_path / "victim.png").exists()


@pytest.mark.parametrize(
    ("video_id", "exp_id", "frame", "message"),
    [
        ("../../v", "0", "00000", r"video id '\.\./\.\./v' is not a plain file name"),
        ("v", "..", "00000", r"expression id '\.\.' is not a plain file name \(is '\.\.'\)"),
        ("v", "0", "/abs", r"frame name '/abs' is not a plain file name \(is absolute\)"),
    ],
)
def test_write_ytvos_masks_refuses_names_that_leave_the_root(
    tmp_path, video_id, exp_id, frame, message
) -> None:
    with pytest.raises(ValueError, match="^write_ytvos_masks: " + message):
        write_ytvos_masks(tmp_path / "sub", video_id, exp_id, np.zeros((1, 4, 6)), [frame])
    assert _files(tmp_path) == {}


def test_write_youtube_vos_masks_refuses_names_that_leave_the_root(tmp_path) -> None:
    masks = np.zeros((2, 4, 6), np.uint8)
    with pytest.raises(ValueError, match=r"^write_youtube_vos_masks: video id '\.\.' is not"):
        write_youtube_vos_masks(tmp_path / "sub", "..", masks, ["00000", "00001"])
    with pytest.raises(ValueError, match=r"^write_youtube_vos_masks: frame id 'a/b' is not"):
        write_youtube_vos_masks(tmp_path / "sub", "v", masks, ["00000", "a/b"])
    assert _files(tmp_path) == {}


def test_official_tables_refuse_names_that_leave_the_folder(tmp_path) -> None:
    from rvoslib.metrics import write_official_tables
    from rvoslib.metrics.official import DAVISFolderResult

    out = tmp_path / "out"
    bad_split = DAVISFolderResult("all", "../../x")
    with pytest.raises(ValueError, match=r"^write_official_tables: path component "):
        write_official_tables(bad_split, out)
    part = DAVISFolderResult("refer-davis", "val")
    bad_annotator = DAVISFolderResult("refer-davis", "val", annotators={"anno_0": part, "..": part})
    with pytest.raises(ValueError, match=r"^write_official_tables: path component '\.\.' is"):
        write_official_tables(bad_annotator, out)
    assert _files(tmp_path) == {}  # checked before the first table (anno_0's) was written
    good = DAVISFolderResult("refer-davis", "val", annotators={"anno_0": part})
    assert len(write_official_tables(good, out)) == 4


def test_eval_predictions_never_writes_into_the_scored_folder(davis_mini, tmp_path, capsys):
    root = copy_davis_subset(davis_mini, tmp_path / "davis", "blackswan", 3)
    predictions = tmp_path / "osvos"
    (predictions / "blackswan").mkdir(parents=True)
    for name in ("00000.png", "00001.png", "00002.png"):
        shutil.copy(
            davis_mini / "predictions" / "osvos" / "blackswan" / name, predictions / "blackswan"
        )
    mine = b"my own table, not rvoslib's\n"
    (predictions / "global_results-val.csv").write_bytes(mine)
    before = _files(predictions)
    argv = ["eval", "--json", "--predictions", str(predictions), "--root", str(root),
            "--protocol", "semi-supervised"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"J", "F", "JF"} <= set(summary)
    assert _files(predictions) == before  # the user's file unchanged, nothing added
    out = tmp_path / "tables"
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "global_results-val.csv").read_bytes() != mine
    assert {"summary.json", "per-sequence_results-val.csv"} <= {p.name for p in out.iterdir()}
    assert _files(predictions) == before
    assert main([*argv, "--out", str(predictions)]) == 0  # explicitly there: replaced
    assert (predictions / "global_results-val.csv").read_bytes() != mine


def test_refdavis_writer_refuses_a_frame_name_with_dot_dot(tmp_path) -> None:
    writer = RefDAVISWriter(tmp_path / "out")
    with pytest.raises(ValueError, match=r"^frame_names: frame name '\.\./\.\./x' is not a plain"):
        writer.add("v", "0", 1, np.zeros((1, 4, 6), np.float32), ["../../x"])
    assert writer.close() == [] and _files(tmp_path) == {}


def test_refdavis_writer_refuses_a_video_id_that_leaves_its_folder(tmp_path) -> None:
    writer = RefDAVISWriter(tmp_path / "out")
    with pytest.raises(ValueError, match=r"^RefDAVISWriter.add: video id '\.\./x' is not a plain"):
        writer.add("../x", "0", 1, np.zeros((1, 4, 6), np.float32), ["00000"])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "anno_0").mkdir(parents=True)
    (tmp_path / "out" / "anno_0" / "v").symlink_to(tmp_path / "elsewhere")
    writer.add("v", "0", 1, np.ones((1, 4, 6), np.float32), ["00000"])
    with pytest.raises(ValueError, match=r"^RefDAVISWriter: .* outside the output folder"):
        writer.flush("v")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_meta_json_layout_errors(tmp_path) -> None:
    path = _youtube_vos_meta(tmp_path, {"v": {"objects": {"1": {"frames": "00000"}}}})
    with pytest.raises(ValueError, match=r"'frames' of object 1 of video 'v' must be a list"):
        load_youtube_vos_meta(path)
    root, meta = _ytvos_root(tmp_path)
    for content, message in (
        ([], ' must hold {"videos"'),
        ({"videos": {"v": 1}}, ": video 'v' has no 'objects' mapping"),
    ):
        meta.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=f"^{re.escape(f'{meta}{message}')}"):
            RefYouTubeVOSDataset(root, "train")


def test_official_scoring_refuses_a_split_file_name_that_leaves_the_root(tmp_path) -> None:
    from rvoslib.metrics.official import evaluate_davis_folder

    root = tmp_path / "root"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("../../etc\n")
    (tmp_path / "predictions").mkdir()
    with pytest.raises(ValueError, match=r"val.txt: video name '\.\./\.\./etc' is not a plain"):
        evaluate_davis_folder(tmp_path / "predictions", root)
