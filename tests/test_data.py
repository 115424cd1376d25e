"""Data: class filtering by labels, balanced seeded subsets, ImageFolder trees, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

import tlhelpers as tl
from tlhelpers.data import balanced_indices, remap_labels, scan_image_folder


def test_cat_dog_default_task(cifar_root):
    train, test = tl.load_cifar_pair(source="folder")
    assert (len(train), len(test)) == (1000, 200)
    assert train.classes == ["cat", "dog"] and train.images.shape == (1000, 3, 32, 32)
    assert train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [500, 500]
    assert torch.bincount(test.labels).tolist() == [100, 100]
    # every image really comes from the folder of its label
    for path, label in zip(train.paths, train.labels.tolist()):
        assert Path(path).parent.name == train.classes[label]
    assert all("/train/" in p for p in train.paths) and all("/test/" in p for p in test.paths)


@pytest.mark.parametrize("classes", [("airplane", "ship", "truck"), ("horse", "deer"), (9, 0, 4, 7)])
def test_other_class_sets_only_those_classes_balanced(cifar_root, classes):
    train = tl.load_cifar_split("train", classes, n=120, seed=1, source="folder")
    names = [tl.CIFAR10_CLASSES[c] if isinstance(c, int) else c for c in classes]
    assert train.classes == names
    per = 120 // len(classes)
    assert torch.bincount(train.labels, minlength=len(classes)).tolist() == [per] * len(classes)
    assert {Path(p).parent.name for p in train.paths} == set(names)


def test_subsets_are_seeded(cifar_root):
    a = tl.load_cifar_split("train", ("cat", "dog"), n=50, seed=3, source="folder")
    b = tl.load_cifar_split("train", ("cat", "dog"), n=50, seed=3, source="folder")
    c = tl.load_cifar_split("train", ("cat", "dog"), n=50, seed=4, source="folder")
    assert a.paths == b.paths and torch.equal(a.images, b.images)
    assert a.paths != c.paths


def test_balanced_indices_reads_labels_only():
    targets = np.array([0, 1, 2, 1, 2, 1, 0, 2, 2])
    idx, lab = balanced_indices(targets, [2, 1], n_total=4, seed=0)
    assert sorted(lab.tolist()) == [0, 0, 1, 1]
    assert (targets[idx[lab == 0]] == 2).all() and (targets[idx[lab == 1]] == 1).all()


def test_remap_labels_vectorised():
    assert remap_labels(torch.tensor([3, 5, 5, 3, 1]), [3, 5]).tolist() == [0, 1, 1, 0, -1]


def test_loader_batches_are_single_gathers(cat_dog):
    train, _ = cat_dog
    loader = tl.make_loader(train, batch_size=64, shuffle=True, seed=0)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    x, y = batches[0]
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.long
    assert not loader.pin_memory  # only with CUDA
    again = [y for _, y in tl.make_loader(train, batch_size=64, shuffle=True, seed=0)]
    assert all(torch.equal(a, b) for a, (_, b) in zip(again, batches))


def test_loader_kwargs_safe():
    kw = tl.loader_kwargs("cpu")
    assert kw["pin_memory"] is False and kw["num_workers"] >= 0
    assert tl.loader_kwargs("cpu", num_workers=0) == {"num_workers": 0, "pin_memory": False}


def test_random_flip_flips_whole_images():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).reshape(2, 3, 2, 4)
    g = torch.Generator().manual_seed(0)
    out = tl.random_flip(x, p=1.0, generator=g)
    assert torch.equal(out, x.flip(-1))
    assert torch.equal(tl.random_flip(x, p=0.0), x)


# ------------------------------------------------------------------ a learner's own ImageFolder


def _write_jpeg(path: Path, size=(40, 30), color=(200, 30, 30)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def test_own_image_folder_mixed_sizes(tmp_path):
    for i in range(3):
        _write_jpeg(tmp_path / "apples" / f"a{i}.jpg", size=(40 + 10 * i, 30))
        _write_jpeg(tmp_path / "pears" / f"p{i}.png", size=(25, 50), color=(20, 200, 20))
    (tmp_path / "notes.txt").write_text("not an image folder")
    ds = tl.load_image_folder(tmp_path, image_size=24)
    assert ds.classes == ["apples", "pears"] and ds.images.shape == (6, 3, 24, 24)
    red = ds.images[ds.labels == 0].float().mean((0, 2, 3))
    assert red[0] > 150 and red[1] < 80  # pixels really decoded, labels follow folders
    with pytest.raises(ValueError, match="different sizes.*image_size"):
        tl.load_image_folder(tmp_path)


def test_unknown_class_lists_valid_ones(cifar_root):
    with pytest.raises(ValueError, match=r"Unknown class 'kitten'\. Valid classes: airplane, automobile, bird, cat"):
        tl.load_cifar_pair(("kitten", "dog"), source="folder")
    tr, _ = tl.load_cifar_pair(("Cat", "DOG"), n_train=4, n_test=2, source="folder")  # any case
    assert tr.classes == ["cat", "dog"] and torch.bincount(tr.labels).tolist() == [2, 2]


@pytest.mark.parametrize("classes", [("cat",), "cat", ()])
def test_fewer_than_two_classes(cifar_root, classes):
    with pytest.raises(ValueError, match="at least 2 classes"):
        tl.load_cifar_pair(classes, source="folder")


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Image folder not found: .*nowhere"):
        tl.load_image_folder(tmp_path / "nowhere")


def test_folder_without_class_folders(tmp_path):
    _write_jpeg(tmp_path / "loose.jpg")
    with pytest.raises(FileNotFoundError, match="No class folders with images"):
        scan_image_folder(tmp_path)


def test_nested_folders_hidden_and_other_files(tmp_path):
    """As torchvision's ImageFolder: images in sub-folders of a class count; hidden and non-image files don't."""
    _write_jpeg(tmp_path / "cat" / "a.jpg")
    _write_jpeg(tmp_path / "cat" / "batch2" / "b.JPG")
    _write_jpeg(tmp_path / "cat" / ".ipynb_checkpoints" / "c.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0")
    _write_jpeg(tmp_path / "dog" / "x" / "y" / "d.png")
    _write_jpeg(tmp_path / ".hidden_class" / "e.jpg")
    classes, files, targets = scan_image_folder(tmp_path)
    assert classes == ["cat", "dog"]
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "cat/a.jpg",
        "cat/batch2/b.JPG",
        "dog/x/y/d.png",
    ]
    assert targets.tolist() == [0, 0, 1]


def test_unreadable_image_names_the_file(tmp_path):
    _write_jpeg(tmp_path / "a" / "fine.jpg")
    _write_jpeg(tmp_path / "b" / "fine.jpg")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=r"Cannot read image file .*b/broken\.jpg"):
        tl.load_image_folder(tmp_path, image_size=16)


def test_asking_for_more_images_than_exist(tmp_path):
    for c in ("a", "b"):
        _write_jpeg(tmp_path / c / "x.jpg")
    with pytest.raises(ValueError, match=r"per class but class 'a' in \S+ has only 1\."):
        tl.load_image_folder(tmp_path, n=4)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    for c in ("apples", "pears", "plums"):
        for i in range(2):
            _write_jpeg(tmp_path / c / f"{i}.jpg", size=(20, 20))
    (tmp_path / "figs").mkdir()  # empty: would be a class the model can never see
    (tmp_path / "figs" / "readme.txt").write_text("todo")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.raises(ValueError, match=r"class .figs. in \S+ has no images: add images to it, or leave it out"):
        tl.load_image_folder(tmp_path)
    ds = tl.load_image_folder(tmp_path, classes=["apples", "pears", "plums"])
    assert ds.classes == ["apples", "pears", "plums"] and torch.bincount(ds.labels).tolist() == [2, 2, 2]


def test_no_data_offline_says_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path))
    monkeypatch.delenv("TLHELPERS_CIFAR_DIR", raising=False)
    import torchvision.datasets

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(RuntimeError, match=r"CIFAR-10 is not available offline: run `python -m tlhelpers prefetch`"):
        tl.load_cifar_pair(source="auto")
    with pytest.raises(FileNotFoundError, match="prefetch --archive"):
        tl.load_cifar_pair(source="folder")


def test_unknown_source():
    with pytest.raises(ValueError, match="Unknown data source 'ftp'"):
        tl.load_cifar_pair(source="ftp")


def test_digits_is_a_different_offline_domain():
    train, test = tl.load_digits_task(n_train=200)
    assert train.images.shape == (200, 3, 32, 32) and len(test) == 500
    assert torch.bincount(train.labels).tolist() == [20] * 10
    assert torch.equal(train.images[:, 0], train.images[:, 1])  # grey strokes: R = G = B


def test_forced_unavailable_device_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TLHELPERS_DEVICE", "cuda")
    with pytest.raises(
        RuntimeError, match=r"Device 'cuda' was asked for .* not available here: unset TLHELPERS_DEVICE"
    ):
        tl.get_device()
    monkeypatch.setenv("TLHELPERS_DEVICE", "cpu")
    assert tl.get_device(verbose=False).type == "cpu"


def test_no_bf16_autocast_on_gpus_that_only_emulate_it(monkeypatch):
    from tlhelpers import device as dev

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)  # a T4
    assert not dev.native_bf16(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100
    assert dev.native_bf16(torch.device("cuda:0"))
    assert not dev.native_bf16(torch.device("mps"))


def test_loader_kwargs_no_workers_in_jupyter_when_default_is_not_fork(monkeypatch):
    import multiprocessing

    from tlhelpers import device as dev

    monkeypatch.setattr(dev, "_in_notebook", lambda: True)
    monkeypatch.setattr(dev.sys, "platform", "linux")
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda allow_none=False: None)
    monkeypatch.setattr(
        multiprocessing, "get_all_start_methods", lambda: ["forkserver", "spawn", "fork"]
    )  # Python 3.14
    assert tl.loader_kwargs("cpu")["num_workers"] == 0


def test_missing_split_under_explicit_root_names_that_root(tmp_path):
    (tmp_path / "mycifar" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"No CIFAR-10 test/ folder in .*mycifar"):
        tl.load_cifar_split("test", root=tmp_path / "mycifar")


def test_unpack_archive_rejects_an_archive_without_the_tree(tmp_path):
    import tarfile

    from tlhelpers.archive import unpack_archive

    (tmp_path / "src" / "photos" / "train").mkdir(parents=True)
    (tmp_path / "src" / "photos" / "train" / "a.txt").write_text("x")
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        tf.add(tmp_path / "src" / "photos", arcname="photos")
    with pytest.raises(FileNotFoundError, match="has no train/ and test/ folders"):
        unpack_archive(bad, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "dest.partial").exists()
    (tmp_path / "src" / "photos" / "test").mkdir()
    (tmp_path / "src" / "photos" / "test" / "b.txt").write_text("y")
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        tf.add(tmp_path / "src" / "photos", arcname="photos")
    assert (unpack_archive(good, tmp_path / "dest") / "test" / "b.txt").is_file()
    assert not (tmp_path / "dest.partial").exists()


def test_safe_extract_refuses_members_outside_the_folder(tmp_path, monkeypatch):
    import io
    import tarfile

    from tlhelpers.archive import safe_extract

    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    for has_filter in (True, False):  # tarfile's own "data" filter, and the check for older Pythons
        if not has_filter:
            monkeypatch.delattr(tarfile, "data_filter", raising=False)
        with tarfile.open(bad) as tf, pytest.raises((ValueError, tarfile.TarError)):
            safe_extract(tf, tmp_path / "out")
        assert not (tmp_path / "escape.txt").exists()
