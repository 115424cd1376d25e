"""The stage registry: every stage-taking function works on ResNet, EfficientNet-Lite0, ConvNeXt and ViT."""

import pytest
import torch
import torchvision

import tlhelpers as tl
from tlhelpers import models
from tlhelpers.freeze import stage_params
from tlhelpers.stages import feature_stages, layout, partial_from

ARCHS = {
    "resnet18": ("fc", "layer4", 6),
    "efficientnet_lite0": ("classifier", "blocks.6", 10),
    "convnext_tiny": ("classifier", "stage4", 6),
    "vit_b_16": ("heads", "block11", 15),
}


def _random(name):
    if name == "efficientnet_lite0":
        return models._lite0_model()
    return torchvision.models.get_model(name, weights=None)


@pytest.mark.parametrize("name", ARCHS)
def test_stages_partition_the_parameters(name):
    m = _random(name)
    head, last, n = ARCHS[name]
    names = tl.stage_names(m)
    assert len(names) == n and names[-1] == head and partial_from(m) == last
    ids = [id(p) for s in names for p in stage_params(m, s)]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in m.parameters()}  # each parameter once
    assert set(feature_stages(m)) <= set(names)


@pytest.mark.parametrize("name", ARCHS)
def test_freeze_recipe_and_param_groups_follow_the_layout(name):
    m = _random(name)
    head, last, _ = ARCHS[name]
    r = tl.recipe("partial fine-tuning")
    stages = r.stages_for(m)
    assert stages[0] == last and stages[-1] == head
    opt = r.apply(m)
    assert tl.trainable_stages(m) == list(stages)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs[head] == r.head_lr and all(lrs[s] == r.backbone_lr for s in stages[:-1])
    assert tl.recipe("feature extraction").stages_for(m) == (head,)
    assert tl.recipe("full fine-tuning").stages_for(m) == tuple(tl.stage_names(m))
    table = tl.stage_table(m, show=False)
    assert f"{last} " in table and "frozen" in table and "trainable" in table
    tl.freeze(m)
    assert tl.count_params(m)[0] == 0
    tl.unfreeze(m, "head")
    assert tl.trainable_stages(m) == [head]


def test_recipe_keeps_the_resnet_reading():
    assert tl.recipe("partial fine-tuning").trainable == ("layer4", "fc")
    assert tl.recipe("feature extraction").cached and tl.recipe("feature extraction").trainable == ("fc",)
    with pytest.raises(ValueError, match="head, last, all"):
        tl.Recipe("x", ("fc",), 1e-3)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "vit_b_16"])
def test_stage_features_use_each_models_feature_stages(name):
    m = _random(name)
    size = 64 if name != "vit_b_16" else 224
    x = torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8)
    feats = tl.stage_features(m, x, amp=False)
    assert list(feats) == list(feature_stages(m))
    assert all(v.ndim == 2 and v.shape[0] == 2 for v in feats.values())
    emb, _ = tl.embed(m, x, amp=False)
    assert emb.shape == (2, models.head_of(m)[1].in_features)


@pytest.mark.parametrize("name", ["resnet50", "convnext_tiny", "vit_b_16"])
def test_torchvision_imagenet_path_with_made_weight_files(name, tmp_path, monkeypatch, capsys):
    """The online ``weights=`` path, offline: a random state dict saved where torchvision caches the real one."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.imagenet_weights_path(name)
    path.parent.mkdir(parents=True)
    torch.manual_seed(1)
    ref = torchvision.models.get_model(name, weights=None)
    torch.save(ref.state_dict(), path)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", lambda self, **kw: torch.load(path))
    model, pre = tl.load_backbone(name, weights="imagenet", num_classes=2)
    assert "ImageNet-1k" in capsys.readouterr().out
    first = next(iter(ref.state_dict()))
    assert torch.equal(model.state_dict()[first], ref.state_dict()[first])
    assert models.head_of(model)[1].out_features == 2
    assert pre(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape[-1] == 224
    assert layout(model).arch in ("resnet", "convnext", "vit")
