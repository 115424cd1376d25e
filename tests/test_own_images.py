"""Notebook 07's package side: odd image files, folders, saving and reloading, lr_find, augmentation, fine_tune."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tlhelpers as tl
from tlhelpers.data import scan_image_folder
from tlhelpers.decode import decode_files
from tlhelpers.samples import make_sample_folder

RED, BLUE = (230, 20, 20), (20, 20, 230)


def _top_red_bottom_blue(w: int = 60, h: int = 40) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2], a[h // 2 :] = RED, BLUE
    return Image.fromarray(a)


def _tiny_model(k: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    model, preprocess = tl.load_backbone("resnet18", weights="random", num_classes=k, verbose=False)
    return model.eval(), preprocess


# ---------------------------------------------------------------- decoding any file


@pytest.mark.parametrize(
    "mode, fmt",
    [("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGB", "WEBP"), ("LA", "PNG"), ("1", "PNG")],
)
def test_any_mode_and_format_becomes_rgb(tmp_path, mode, fmt):
    path = tmp_path / f"img.{fmt.lower()}"
    _top_red_bottom_blue().convert(mode).save(path, fmt)
    x = decode_files([str(path)], 32)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.uint8
    if mode not in ("L", "LA", "1"):
        top, bottom = x[0, :, :8].float().mean((1, 2)), x[0, :, -8:].float().mean((1, 2))
        assert top[0] > top[2] + 100 and bottom[2] > bottom[0] + 100  # colours survive the conversion


def test_transparent_pixels_become_white_not_black(tmp_path):
    a = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    assert decode_files([str(tmp_path / "t.png")], 16).min() == 255


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.full((10, 10), 65535, np.uint16)
    a[:5] = 32896  # half of the range: 128 in 8 bits
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    x = decode_files([str(tmp_path / "deep.png")])
    assert x[0, 0, 0, 0] == 128 and x[0, 0, -1, 0] == 255


def test_exif_rotated_phone_photo_is_decoded_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _top_red_bottom_blue().transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", exif=exif)
    for size in (None, 24):
        x = decode_files([str(tmp_path / "phone.jpg")], size)[0].float()
        if size is None:
            assert x.shape == (3, 40, 60)  # landscape again
        top, bottom = x[:, :4].mean((1, 2)), x[:, -4:].mean((1, 2))
        assert top[0] > top[2] + 100 and bottom[2] > bottom[0] + 100


def test_tiny_and_huge_images(tmp_path):
    Image.new("RGB", (1, 1), (10, 200, 10)).save(tmp_path / "tiny.png")
    _top_red_bottom_blue(4000, 3000).save(tmp_path / "huge.jpg", quality=80)
    x = decode_files([str(tmp_path / "tiny.png"), str(tmp_path / "huge.jpg")], 64)
    assert x.shape == (2, 3, 64, 64)
    assert x[0, 1].min() == 200
    assert x[1, 0, :20].float().mean() > 200 and x[1, 2, -20:].float().mean() > 200


def test_symlink_loop_is_listed_once(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / c / "x.jpg")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    classes, files, _ = scan_image_folder(tmp_path)
    assert classes == ["a", "b"] and len(files) == 2


# ---------------------------------------------------------------- folders: bad input


def _folder(tmp_path: Path, counts: dict[str, int]) -> Path:
    for c, n in counts.items():
        (tmp_path / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (20 + i, 16), (40 * i % 255, 100, 50)).save(tmp_path / c / f"{i}.jpg")
    return tmp_path


def test_one_class_folder_is_one_clear_error(tmp_path):
    _folder(tmp_path, {"only": 3})
    with pytest.raises(ValueError, match=r"has one class folder \('only'\).*at least 2"):
        tl.load_image_folder(tmp_path, image_size=16)


def test_class_too_small_to_split_names_it(tmp_path):
    data = tl.load_image_folder(_folder(tmp_path, {"many": 5, "lonely": 1}), image_size=16)
    with pytest.raises(ValueError, match=r"Class 'lonely' \(in .*lonely\) has 1 image\(s\)"):
        tl.train_val_split(data)


def test_unreadable_files_error_by_default_and_skip_bad_reports_them(tmp_path):
    _folder(tmp_path, {"a": 4, "b": 4})
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Cannot read image file .*(broken\.jpg|empty\.png)"):
        tl.load_image_folder(tmp_path, image_size=16)
    with pytest.warns(
        UserWarning,
        match=r"Skipped 2 unreadable image file\(s\) of 10 in .*: (a/empty|b/broken)\.\w+ "
        r"\(cannot identify image file\); ",
    ):
        data = tl.load_image_folder(tmp_path, image_size=16, skip_bad=True)
    assert len(data) == 8 and torch.bincount(data.labels).tolist() == [4, 4]
    assert sorted(Path(p).name for p in data.skipped) == ["broken.jpg", "empty.png"]
    assert "2 unreadable file(s) skipped" in repr(data)
    assert all("broken" not in p for p in data.paths)


def test_sample_folder_is_messy_on_purpose_and_loads(tmp_path, cifar_root):
    folder = make_sample_folder(tmp_path / "photos", n_per_class=30)
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert {".jpg", ".png", ".webp", ".txt"} <= suffixes
    data = tl.load_image_folder(folder, image_size=32)
    assert data.classes == ["automobile", "truck"] and torch.bincount(data.labels).tolist() == [30, 30]
    sizes = {Image.open(p).size for p in data.paths}
    assert len(sizes) > 20  # mixed sizes


# ---------------------------------------------------------------- saving and loading


def test_save_load_gives_identical_logits_in_a_fresh_process(tmp_path):
    model, preprocess = _tiny_model(3)
    path = tl.save_model(model, tmp_path / "m.pt", preprocess, ["a", "b", "c"], training={"val_acc": np.float32(0.5)})
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    torch.save(x, tmp_path / "x.pt")
    with torch.inference_mode():
        ref = model(tl.prepare_batch(x, "cpu", preprocess))
    code = textwrap.dedent(f"""
        import torch, tlhelpers as tl
        model, pre, info = tl.load_model({str(path)!r})
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.inference_mode():
            torch.save(model(tl.prepare_batch(x, "cpu", pre)), {str(tmp_path / "out.pt")!r})
        print(info["classes"], info["training"], pre.crop_size)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "['a', 'b', 'c'] {'val_acc': 0.5} [64]" in run.stdout
    assert torch.equal(torch.load(tmp_path / "out.pt"), ref)


def test_lite0_model_file_rebuilds_lite0_from_the_file_alone(tmp_path):
    """A fine-tuned Lite0 saved to one file: arch and bicubic 0.5/0.5 preprocessing recorded; a fresh process
    rebuilds it with the Lite0 weights package out of reach and predicts identically."""
    pytest.importorskip("timm")
    from tlhelpers.models import LITE0

    torch.manual_seed(0)
    model, preprocess = tl.load_backbone(LITE0, weights="random", num_classes=3, verbose=False)
    model.eval()
    path = tl.save_model(model, tmp_path / "lite0.pt", preprocess, ["a", "b", "c"])  # arch found from the model
    saved = torch.load(path, weights_only=True)
    assert saved["arch"] == LITE0
    assert saved["preprocessing"] == {
        "size": tl.settings.LITE0_SIZE,
        "resize_size": tl.settings.LITE0_SIZE,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bicubic",
    }
    x = torch.randint(0, 256, (3, 3, 96, 150), dtype=torch.uint8)  # not the input size: the file says how
    torch.save(x, tmp_path / "x.pt")
    with torch.inference_mode():
        ref = model(tl.prepare_batch(x, "cpu", preprocess))
    code = textwrap.dedent(f"""
        import torch, tlhelpers as tl
        def unavailable(*a, **k):
            raise AssertionError("the ImageNet Lite0 weights were read")
        tl.models.lite0_state_dict = unavailable  # nothing but the file
        model, pre, info = tl.load_model({str(path)!r})
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.inference_mode():
            torch.save(model(tl.prepare_batch(x, "cpu", pre)), {str(tmp_path / "out.pt")!r})
        print(info["arch"], type(model).__name__, pre.crop_size, pre.interpolation.value)
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"efficientnet_lite0 EfficientNet [{tl.settings.LITE0_SIZE}] bicubic" in run.stdout
    assert torch.equal(torch.load(tmp_path / "out.pt"), ref)
    with pytest.raises(ValueError, match="does not fit"):  # a Lite0 is not a resnet18
        tl.save_model(model, tmp_path / "wrong.pt", preprocess, ["a", "b", "c"], arch="resnet18")


def test_fine_tuned_course_backbone_reloads_with_its_own_preprocessing(tmp_path):
    model, preprocess = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    path = tl.save_model(model, tmp_path / "ft.pt", preprocess, ["cat", "dog"])
    _, pre = tl.load_backbone("resnet18", weights=path, verbose=False)
    assert pre.crop_size == [64] and pre.mean == preprocess.mean  # not ImageNet's 224 px
    _, pre2, _ = tl.load_model(path)
    assert pre2.crop_size == [64] and pre2.std == preprocess.std


def test_bad_model_files_are_one_clear_error_naming_the_file(tmp_path):
    model, preprocess = _tiny_model(2)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"bare\.pt is a bare state dict, not a model saved by tl\.save_model"):
        tl.load_model(tmp_path / "bare.pt")
    good = tl.save_model(model, tmp_path / "good.pt", preprocess, ["x", "y"])
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"Cannot read checkpoint .*cut\.pt"):
        tl.load_model(tmp_path / "cut.pt")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(ValueError, match=r"Cannot read checkpoint .*notes\.pt"):
        tl.load_model(tmp_path / "notes.pt")
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        tl.load_model(tmp_path / "nothing.pt")
    other = torch.load(good, weights_only=True)
    other["state_dict"] = tl.load_backbone("resnet34", weights="random", num_classes=2, verbose=False)[0].state_dict()
    torch.save(other, tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"Checkpoint r34\.pt does not fit ResNet .*unexpected"):
        tl.load_model(tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"does not fit ResNet"):  # wrong arch caught when saving, too
        tl.save_model(model, tmp_path / "wrong.pt", preprocess, ["x", "y"], arch="resnet34")
    with pytest.raises(ValueError, match=r"does not fit ResNet.*fc\.weight"):  # 3 names for 2 outputs
        tl.save_model(model, tmp_path / "wrong.pt", preprocess, ["x", "y", "z"])
    assert not (tmp_path / "wrong.pt").exists()


# ---------------------------------------------------------------- predicting files


def test_predict_files_any_file_top_k(tmp_path):
    model, preprocess = _tiny_model(3)
    _top_red_bottom_blue().convert("CMYK").save(tmp_path / "a.jpg")
    _top_red_bottom_blue(3000, 2000).save(tmp_path / "b.png")
    Image.new("L", (5, 7), 90).save(tmp_path / "c.webp")
    (tmp_path / "sub").mkdir()
    Image.new("RGBA", (30, 30)).save(tmp_path / "sub" / "d.png")
    (tmp_path / "readme.txt").write_text("skip me")
    out = tl.predict_files(model, tmp_path, preprocess, ["x", "y", "z"], k=2)
    assert [Path(o["file"]).name for o in out] == ["a.jpg", "b.png", "c.webp", "d.png"]
    for o in out:
        assert len(o["top"]) == 2 and {c for c, _ in o["top"]} <= {"x", "y", "z"}
        assert o["top"][0][1] >= o["top"][1][1] and 0 < sum(p for _, p in o["top"]) <= 1 + 1e-6
    one = tl.predict_files(model, tmp_path / "a.jpg", preprocess, ["x", "y", "z"], k=5)
    assert len(one) == 1 and len(one[0]["top"]) == 3
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        tl.predict_files(model, tmp_path, preprocess, ["x", "y"])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        tl.predict_files(model, [tmp_path / "missing.jpg"], preprocess, ["x", "y", "z"])


# ---------------------------------------------------------------- training helpers


def _separable(n: int = 64) -> tl.ImageTensors:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 80, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] += 150  # class 1 is red
    return tl.ImageTensors(images, labels, ["grey", "red"])


def test_lr_find_sweeps_up_and_restores_the_weights():
    model, preprocess = _tiny_model(2)
    tl.set_trainable(model, ["fc"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = tl.make_loader(_separable(), 16, shuffle=True)
    r = tl.lr_find(model, loader, preprocess, start_lr=1e-5, end_lr=10, steps=30)
    lrs = np.array(r["lrs"])
    assert 5 <= len(lrs) <= 30 and np.all(np.diff(lrs) > 0) and lrs[0] == pytest.approx(1e-5)
    assert len(r["losses"]) == len(lrs) and 1e-5 <= r["suggested"] <= 1 + 1e-9
    assert r["suggested"] == pytest.approx(lrs[int(np.argmin(r["losses"]))] / 10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="steps >= 5"):
        tl.lr_find(model, loader, preprocess, steps=2)


def test_augmenter_draws_its_own_crop_per_image_and_is_seeded():
    x = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64).expand(8, 3, 64, 64)
    x = (x / x.max() * 255).to(torch.uint8)
    a = tl.augmenter(size=32, jitter=0, flip=False, seed=1)(x)
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.uint8
    assert len({tuple(img[0, :, 0].tolist()) for img in a}) == 8  # eight different boxes, not one for the batch
    assert torch.equal(a, tl.augmenter(size=32, jitter=0, flip=False, seed=1)(x))
    full = tl.random_resized_crop(x, 64, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert (full.int() - x.int()).abs().max() <= 1  # the whole image at its own size: unchanged
    j = tl.color_jitter(torch.full((16, 3, 8, 8), 128, dtype=torch.uint8), 0.5, 0, 0)
    assert len(set(j[:, 0, 0, 0].tolist())) > 8  # each image its own brightness


def test_fine_tune_two_phases_keeps_the_best_epoch():
    model, preprocess = _tiny_model(2)
    train, val = tl.train_val_split(_separable(96), 0.25)
    hist = tl.fine_tune(
        model,
        tl.make_loader(train, 16, shuffle=True),
        tl.make_loader(val, 32),
        lr=1e-2,
        transform=preprocess,
        head_epochs=2,
        epochs=2,
        augment=tl.augmenter(),
        progress=False,
    )
    assert [h["phase"] for h in hist] == [1, 1, 2, 2] and [h["epoch"] for h in hist] == [1, 2, 3, 4]
    best = [h for h in hist if h.get("best")]
    assert len(best) == 1 and best[0]["phase"] == best[0]["choice"].chosen  # the verdict is in the result
    phase_best = max((h["val_acc"] for h in hist if h["phase"] == best[0]["phase"]))
    assert best[0]["val_acc"] == phase_best  # the best epoch of the kept phase
    if best[0]["phase"] == 1:  # phase 2 kept only if better beyond noise
        assert best[0]["choice"].comparisons.get(2) is None or best[0]["choice"].comparisons[2].verdict != "better"
    acc = tl.evaluate(model, tl.make_loader(val, 32), preprocess)["acc"]
    assert acc == pytest.approx(best[0]["val_acc"])  # the model holds the chosen epoch's weights
    assert tl.trainable_stages(model) == ["layer4", "fc"]


@pytest.mark.parametrize("phase2_right, kept", [(16, 1), (17, 1), (32, 2)])
def test_fine_tune_keeps_phase_one_unless_phase_two_is_better_beyond_noise(monkeypatch, phase2_right, kept):
    """The course rule on validation: phase 1 (simpler) on a tie, even a tie phase 2 leads on points."""
    from tlhelpers import finetune

    scores = iter([torch.arange(32) < 16, torch.arange(32) < phase2_right])  # phase 1, then phase 2: per image
    monkeypatch.setattr(finetune, "_correct", lambda *a: next(scores))
    model, preprocess = _tiny_model(2)
    train, val = tl.train_val_split(_separable(48), 0.25)
    hist = tl.fine_tune(
        model, tl.make_loader(train, 12), tl.make_loader(val, 12), 1e-3, preprocess, 1, 1, progress=False
    )
    best = [h for h in hist if h.get("best")]
    assert len(best) == 1 and best[0]["phase"] == kept and best[0]["choice"].chosen == kept
    assert best[0]["choice"].on == "validation"
    if kept == 1:
        acc = tl.evaluate(model, tl.make_loader(val, 12), preprocess, warn=False)["acc"]
        assert acc == pytest.approx(best[0]["val_acc"])


def test_fine_tune_on_lite0_unfreezes_its_top_stage():
    pytest.importorskip("timm")
    from tlhelpers.finetune import top_stages

    model, _ = tl.load_backbone(tl.models.LITE0, weights="random", num_classes=2, verbose=False)
    assert top_stages(model) == ("blocks.6", "conv_head")
    assert top_stages(_tiny_model(2)[0]) == ("layer4",)
    pre = tl.models.lite0_preprocess(32)
    train, val = tl.train_val_split(_separable(24), 0.25)
    hist = tl.fine_tune(model, tl.make_loader(train, 6), tl.make_loader(val, 6), 1e-3, pre, 1, 1, progress=False)
    assert [h["phase"] for h in hist] == [1, 2] and sum(bool(h.get("best")) for h in hist) == 1
    assert tl.trainable_stages(model) == ["blocks.6", "conv_head", "classifier"]
