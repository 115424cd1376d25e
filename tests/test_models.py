"""Weights resolution: course backbone, ImageNet path (offline remedies), checkpoints, heads."""

import hashlib

import pytest
import torch
import torch.nn as nn
import torchvision

import tlhelpers as tl
from tlhelpers import models


def test_course_backbone_loads_with_metadata(capsys):
    info = tl.course_backbone_info()
    assert not {"cat", "dog"} & set(info["source_classes"]) and len(info["source_classes"]) == 8
    model, pre = tl.load_backbone("resnet18", weights="course", num_classes=2)
    out = capsys.readouterr().out
    assert "course backbone" in out and "without cats or dogs" in out
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 2
    x = pre(torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8))
    assert x.shape == (3, 3, info["preprocessing"]["size"], info["preprocessing"]["size"]) and x.dtype == torch.float32
    ref = torchvision.models.resnet18(num_classes=8)
    m8, _ = tl.load_backbone(weights="course", verbose=False)
    # the shipped weights are not a random init
    assert not torch.allclose(m8.conv1.weight, ref.conv1.weight)


def test_course_checksum_is_verified(tmp_path, monkeypatch):
    info = tl.course_backbone_info()
    assert (
        hashlib.sha256((models.resources.files("tlhelpers") / "weights" / models.COURSE_FILE).read_bytes()).hexdigest()
        == info["sha256"]
    )
    monkeypatch.setattr(models, "course_backbone_info", lambda: {**info, "sha256": "0" * 64})
    with pytest.raises(tl.WeightsUnavailable, match="Checksum mismatch"):
        tl.load_backbone(weights="course")


def test_offline_imagenet_names_the_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TLHELPERS_OFFLINE", "1")
    with pytest.raises(tl.WeightsUnavailable) as e:
        tl.load_backbone("resnet18", weights="imagenet")
    msg = str(e.value)
    assert (
        "python -m tlhelpers prefetch" in msg and str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg
    )
    assert "weights='course'" in msg and "\n" not in msg


def test_no_network_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TLHELPERS_OFFLINE", raising=False)

    def no_network(*a, **k):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(tl.WeightsUnavailable, match=r"cannot be downloaded \(OSError"):
        tl.load_backbone("resnet18", weights="imagenet")


def test_auto_offline_announces_course_backbone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TLHELPERS_OFFLINE", "1")
    model, pre = tl.load_backbone("resnet18", weights="auto")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ImageNet weights not available offline: using the course backbone")
    assert out[1].startswith("Weights: course backbone")
    assert model.fc.out_features == 8


def test_a_failed_download_is_tried_and_announced_once_per_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TLHELPERS_OFFLINE", raising=False)
    calls = []

    def no_network(*a, **k):
        calls.append(a)
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    for _ in range(3):
        tl.load_backbone("resnet18", weights="auto")
    out = capsys.readouterr().out
    assert len(calls) == 1
    assert out.count("ImageNet weights not available offline") == 1 and out.count("Weights: course backbone") == 3
    with pytest.raises(tl.WeightsUnavailable, match="cannot be downloaded"):  # explicit requests still say why
        tl.load_backbone("resnet18", weights="imagenet")


def test_imagenet_path_with_cached_file(tmp_path, monkeypatch, capsys):
    """The online code path, tested with a state dict placed where torchvision caches the weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    ref = torchvision.models.resnet18()  # 1000-class, like the real file
    torch.save(ref.state_dict(), path)
    model, pre = tl.load_backbone("resnet18", weights="imagenet", num_classes=3)
    assert torch.equal(model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    assert model.fc.out_features == 3
    assert pre(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 3, 224, 224)
    assert "ImageNet-1k" in capsys.readouterr().out


def test_random_is_announced(capsys):
    tl.load_backbone(weights="random", num_classes=2)
    assert "randomly initialised (no pretraining)" in capsys.readouterr().out


def test_checkpoint_file_round_trip_and_wrong_architecture(tmp_path, capsys):
    m, _ = tl.load_backbone(weights="course", num_classes=2, verbose=False)
    good = tmp_path / "mine.pt"
    torch.save(m.state_dict(), good)
    m2, pre = tl.load_backbone(weights=str(good))
    assert torch.equal(m2.fc.weight, m.fc.weight) and m2.fc.out_features == 2
    assert (
        "no preprocessing in it and no mine.json beside it, so ImageNet's (224 px) is assumed"
        in capsys.readouterr().out
    )
    assert list(pre.crop_size) == [224]
    (tmp_path / "mine.json").write_text(
        '{"preprocessing": {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}'
    )
    _, pre = tl.load_backbone(weights=str(good))
    assert "preprocessing from mine.json" in capsys.readouterr().out and list(pre.crop_size) == [64]

    wrong = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    with pytest.raises(ValueError, match=r"resnet34\.pt does not fit ResNet \(unexpected \d+: layer1\.2\."):
        tl.load_backbone("resnet18", weights=str(wrong))
    other = tmp_path / "mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), other)
    with pytest.raises(ValueError, match=r"missing \d+: bn1\.bias"):
        tl.load_backbone("resnet18", weights=str(other))
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        tl.load_backbone("resnet18", weights=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match="Unknown weights 'imagenette'"):
        tl.load_backbone("resnet18", weights="imagenette")


def test_replace_head_other_models():
    m = tl.replace_head(torchvision.models.mobilenet_v3_small(), 4)
    assert m.classifier[-1].out_features == 4
    with pytest.raises(ValueError, match="at least 2"):
        tl.replace_head(m, 1)


def test_wrapped_checkpoint_with_its_own_head_loads(tmp_path):
    m, _ = tl.load_backbone(weights="course", num_classes=3, verbose=False)
    path = tmp_path / "finetuned.pt"
    torch.save({"model": {f"module.{k}": v for k, v in m.state_dict().items()}, "epoch": 4}, path)
    m2, _ = tl.load_backbone(weights=str(path), verbose=False)
    assert m2.fc.out_features == 3 and torch.equal(m2.fc.weight, m.fc.weight)


def test_offline_zero_means_downloads_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TLHELPERS_OFFLINE", "0")
    tried = []

    def no_network(*a, **k):
        tried.append(a)
        raise OSError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(tl.WeightsUnavailable, match=r"cannot be downloaded \(OSError"):
        tl.load_backbone("resnet18", weights="imagenet")
    assert tried


def test_replace_head_is_reproducible_and_leaves_global_rng_alone():
    a = tl.replace_head(torchvision.models.resnet18(weights=None), 3)
    b = tl.replace_head(torchvision.models.resnet18(weights=None), 3)
    assert torch.equal(a.fc.weight, b.fc.weight)  # seed=0: the same head every time
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    tl.replace_head(a, 4)
    assert torch.equal(torch.rand(5), expected)  # the caller's random stream is not reset


def test_load_checkpoint_restores_weights_into_a_model_and_names_mismatched_keys(tmp_path):
    trained, _ = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    path = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), path)
    fresh, _ = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    assert not torch.equal(fresh.layer4[1].conv2.weight, trained.layer4[1].conv2.weight)
    assert tl.load_checkpoint(fresh, path) is fresh
    for (k, a), b in zip(fresh.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a.float(), b.float()), k
    other = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34(num_classes=2).state_dict(), other)
    with pytest.raises(ValueError, match=r"resnet34\.pt.*layer1\.2"):
        tl.load_checkpoint(fresh, other)


def test_preprocess_is_torchvisions_preset_without_its_private_module():
    import torchvision

    from tlhelpers.models import Preprocess

    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()  # torchvision's own, through its public API
    ours = Preprocess.like(preset)
    assert (ours.crop_size, ours.resize_size, ours.mean, ours.std) == (
        preset.crop_size,
        preset.resize_size,
        preset.mean,
        preset.std,
    )
    x = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)
    assert torch.equal(ours(x), preset(x))
    assert torch.equal(ours(x[0]), preset(x[0]))  # one image (C, H, W) too
    grey = x[:, :1]
    assert torch.equal(ours(grey), preset(grey.expand(-1, 3, -1, -1)))  # grey widened to 3 channels
    with pytest.raises(ValueError, match=r"shape \(2, 4, 40, 30\)"):
        ours(torch.zeros(2, 4, 40, 30, dtype=torch.uint8))
    with pytest.raises(ValueError, match="crop size must be a positive whole number of pixels, got 0"):
        Preprocess(0)
