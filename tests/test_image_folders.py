"""Image folders as users really have them (issue 23): links, mixed sizes, unreadable folders, HEIC photos,
memory pressure, bad arguments. Each test asserts the message the user reads."""

import builtins
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import tlhelpers as tl
from tlhelpers import decode
from tlhelpers.data import image_files_below


def _tree(root: Path, counts: dict[str, int], size=(20, 16)) -> Path:
    for c, n in counts.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", size, (40 * i % 255, 100, 50)).save(root / c / f"{i}.png")
    return root


def _deny(monkeypatch, *denied: Path) -> None:
    """Make ``denied`` unreadable as a user sees it (the tests may run as root, where chmod 000 does not deny)."""
    real = {os.path.realpath(d) for d in denied}
    scandir, open_ = os.scandir, builtins.open

    def guard(p):
        if os.path.realpath(p) in real:
            raise PermissionError(13, "Permission denied", os.fspath(p))

    def fake_scandir(p="."):
        guard(p)
        return scandir(p)

    def fake_open(p, *a, **k):
        if isinstance(p, (str, os.PathLike)):
            guard(p)
        return open_(p, *a, **k)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    monkeypatch.setattr(builtins, "open", fake_open)


def test_link_from_a_class_folder_to_the_root_is_left_out_and_named(tmp_path):
    _tree(tmp_path, {"a": 4, "b": 4, "c": 4})
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"Left out the link .*a/loop -> .*: it leads out of the class folder"):
        ds = tl.load_image_folder(tmp_path)
    assert torch.bincount(ds.labels).tolist() == [4, 4, 4]  # nothing counted twice
    train, val = tl.train_val_split(ds, 0.25)
    assert not {os.path.realpath(p) for p in train.paths} & {os.path.realpath(p) for p in val.paths}


def test_each_real_file_is_listed_once_and_outside_links_are_followed(tmp_path):
    root, elsewhere = _tree(tmp_path / "data", {"a": 2, "b": 2}), _tree(tmp_path / "photos", {"cats": 3})
    (root / "a" / "more").symlink_to(elsewhere / "cats", target_is_directory=True)  # a folder outside the tree
    (root / "a" / "again").symlink_to(elsewhere / "cats", target_is_directory=True)  # the same folder twice
    os.link(root / "b" / "0.png", root / "b" / "0-hard.png")  # a hard link: one real file
    classes, files, targets = tl.data.scan_image_folder(root)
    assert torch.bincount(torch.as_tensor(targets)).tolist() == [2 + 3, 2]


def test_mixed_sizes_fail_from_the_headers_before_any_decoding(tmp_path, monkeypatch):
    _tree(tmp_path, {"a": 2}, size=(40, 30))
    _tree(tmp_path, {"b": 2}, size=(30, 40))
    decoded = []
    monkeypatch.setattr(decode, "_open_rgb", lambda p, s: decoded.append(p))
    with pytest.raises(
        ValueError,
        match=r"different sizes: \S+/[ab]/\d\.png is (40 x 30|30 x 40) and \S+/[ab]/\d\.png is (30 x 40|40 x 30) "
        r"pixels\. Pass image_size=N \(e\.g\. image_size=64\) to resize",
    ):
        tl.load_image_folder(tmp_path)
    assert decoded == []  # not one photo decoded


def test_unreadable_class_folder_is_named_with_the_reason(tmp_path, monkeypatch):
    _tree(tmp_path, {"a": 3, "b": 3, "c": 3})
    _deny(monkeypatch, tmp_path / "c")
    with pytest.raises(PermissionError, match=r"^Cannot read \S+/c: Permission denied\. Fix its permissions"):
        tl.load_image_folder(tmp_path)
    assert len(tl.load_image_folder(tmp_path, classes=["a", "b"])) == 6  # a class left out may be unreadable
    with pytest.raises(ValueError, match=r"No readable image in class 'c': cannot read \S+/c: Permission denied\.$"):
        with pytest.warns(UserWarning, match=r"Skipped \S+/c: Permission denied \(class 'c'\)"):
            tl.load_image_folder(tmp_path, skip_bad=True)


def test_unreadable_sub_folder_is_named_not_silently_skipped(tmp_path, monkeypatch):
    _tree(tmp_path, {"x": 6, "y": 6})
    _deny(monkeypatch, tmp_path / "y")
    with pytest.raises(PermissionError, match=r"^Cannot read \S+/y: Permission denied\. .* or move it out\.$"):
        image_files_below(tmp_path)
    (tmp_path / "y" / "z").mkdir()
    Image.new("RGB", (20, 16)).save(tmp_path / "y" / "z" / "0.png")
    monkeypatch.undo()
    _deny(monkeypatch, tmp_path / "y" / "z")
    with pytest.warns(UserWarning, match=r"Skipped \S+/y/z: Permission denied \(class 'y'\)"):
        ds = tl.load_image_folder(tmp_path, skip_bad=True)
    assert len(ds) == 12 and ds.skipped == [str(tmp_path / "y" / "z")]


def test_unreadable_file_reason_has_no_stray_colon(tmp_path, monkeypatch):
    _tree(tmp_path, {"a": 2, "b": 2})
    _deny(monkeypatch, tmp_path / "b" / "1.png")
    with pytest.raises(ValueError, match=r"^Cannot read image file \S+/b/1\.png: Permission denied$"):
        tl.load_image_folder(tmp_path)


def test_heic_photos_are_loaded_from_folders(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    _tree(tmp_path, {"a": 2, "b": 1})
    Image.new("RGB", (20, 16), (0, 0, 200)).save(tmp_path / "b" / "phone.HEIC")
    ds = tl.load_image_folder(tmp_path, image_size=16)
    assert torch.bincount(ds.labels).tolist() == [2, 2]
    blue = ds.images[[i for i, p in enumerate(ds.paths) if p.endswith(".HEIC")][0]].float().mean((1, 2))
    assert blue[2] > 150 and blue[0] < 60


def test_heic_without_pillow_heif_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "x.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    monkeypatch.setattr(decode, "_HEIC", [])
    with pytest.raises(ValueError, match=r"^Cannot read image file \S+x\.heic: HEIC/HEIF images need pillow-heif "):
        decode.decode_files([tmp_path / "x.heic"], 16)
    assert decode.heic_support().endswith(": pip install pillow-heif")


def test_a_class_split_too_often_names_both_counts(tmp_path):
    ds = tl.load_image_folder(_tree(tmp_path, {"a": 6, "b": 2}))
    rest, _ = tl.train_val_split(ds, 0.3)
    with pytest.raises(ValueError, match=r"Class 'b' \(in \S+/b\) has 1 image\(s\) in this part, of 2 loaded from its"):
        tl.train_val_split(rest, 0.3)


def test_out_of_memory_while_decoding_is_not_called_unreadable(tmp_path, monkeypatch):
    _tree(tmp_path, {"a": 2, "b": 2})

    def no_memory(self):
        raise MemoryError()

    monkeypatch.setattr(Image.Image, "load", no_memory)
    for skip_bad in (False, True):  # never skipped as if the file were bad
        with pytest.raises(MemoryError, match=r"^Out of memory while decoding \S+\.png \(20 x 16 pixels\): close"):
            tl.load_image_folder(tmp_path, image_size=16, skip_bad=skip_bad)


def test_splits_do_not_repeat_the_parents_skipped_files(tmp_path):
    _tree(tmp_path, {"a": 5, "b": 5})
    (tmp_path / "a" / "bad.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="Skipped 1 unreadable"):
        ds = tl.load_image_folder(tmp_path, skip_bad=True)
    train, val = tl.train_val_split(ds, 0.4)
    assert "1 unreadable file(s) skipped" in repr(ds)
    assert "skipped" not in repr(train) and "skipped" not in repr(val) and train.skipped == val.skipped == []


@pytest.mark.parametrize("size", [0, -5, 64.5, True, "64"])
def test_image_size_must_be_a_positive_whole_number(tmp_path, size):
    _tree(tmp_path, {"a": 2, "b": 2})
    msg = rf"^image_size must be a positive whole number of pixels \(e\.g\. 64\) or None, got {size!r}\.$"
    with pytest.raises(ValueError, match=msg.replace("'", ".")):
        tl.load_image_folder(tmp_path, image_size=size)
    with pytest.raises(ValueError, match="image_size must be"):
        decode.decode_files([tmp_path / "a" / "0.png"], size)


def test_grey_batches_are_widened_to_three_channels():
    grey = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    out = tl.prepare_batch(grey)
    assert out.shape == (2, 3, 8, 8) and torch.equal(out[:, 0], out[:, 2])
    _, pre = tl.load_backbone("resnet18", weights="course", verbose=False)
    assert torch.equal(tl.prepare_batch(grey, "cpu", pre), pre(grey.expand(-1, 3, -1, -1)))


def _corrupt_two(root: Path) -> list[Path]:
    """12 images in ``root``, 2 of them corrupt (a truncated PNG, text named .jpg): the corrupt ones, in order."""
    _tree(root, {"photos": 12})
    bad = [root / "photos" / "3.png", root / "photos" / "7.png"]
    bad[0].write_bytes(bad[0].read_bytes()[:20])
    bad[1].write_text("not an image")
    return bad


def test_predict_files_names_the_first_corrupt_file(tmp_path):
    bad = _corrupt_two(tmp_path)
    model, preprocess = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    with pytest.raises(ValueError, match=rf"^Cannot read image file {bad[0]}: "):
        tl.predict_files(model, tmp_path, preprocess, ["x", "y"], batch_size=5)


def test_predict_files_skip_bad_skips_and_names_the_corrupt_files(tmp_path, monkeypatch):
    bad = _corrupt_two(tmp_path)
    model, preprocess = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    with pytest.warns(UserWarning, match=rf"Skipped 2 unreadable image file\(s\) of 12: {bad[0]} \(.*; {bad[1]} \("):
        out = tl.predict_files(model, tmp_path, preprocess, ["x", "y"], batch_size=5, skip_bad=True)
    assert len(out) == 10 and out.skipped == [str(b) for b in bad]
    assert str(bad[0]) not in {o["file"] for o in out} and all(len(o["top"]) == 2 for o in out)
    (tmp_path / "photos" / "sub").mkdir()
    _deny(monkeypatch, tmp_path / "photos" / "sub")  # an unreadable folder: an error, or skipped and named
    with pytest.raises(PermissionError, match=r"^Cannot read \S+/sub: Permission denied\. .* pass skip_bad=True\.$"):
        tl.predict_files(model, tmp_path, preprocess, ["x", "y"], skip_bad=False)
    with pytest.warns(UserWarning) as caught:
        out = tl.predict_files(model, tmp_path, preprocess, ["x", "y"], skip_bad=True)
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"Skipped {tmp_path / 'photos' / 'sub'}",
        "Skipped 2 unreadable image file(s) of 12",
    ]
    assert len(out) == 10 and out.skipped == [str(tmp_path / "photos" / "sub")] + [str(b) for b in bad]
