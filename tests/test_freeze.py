"""Freezing, diagnostics and optimizers: counts equal the closed-form numbers, frozen weights never move."""

import pytest
import torch
import torch.nn as nn
import torchvision

import tlhelpers as tl


# ---- closed form for torchvision's ResNet18 -------------------------------------------------
def conv(cin, cout, k):
    return cin * cout * k * k


def bn(c):
    return 2 * c


def block(cin, cout, down):
    n = conv(cin, cout, 3) + bn(cout) + conv(cout, cout, 3) + bn(cout)
    return n + (conv(cin, cout, 1) + bn(cout) if down else 0)


STEM = conv(3, 64, 7) + bn(64)
LAYERS = {
    f"layer{i + 1}": block(cin, cout, cin != cout) + block(cout, cout, False)
    for i, (cin, cout) in enumerate([(64, 64), (64, 128), (128, 256), (256, 512)])
}


def head(k):
    return 512 * k + k


def total(k):
    return STEM + sum(LAYERS.values()) + head(k)


def resnet(k=2):
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    m.fc = nn.Linear(m.fc.in_features, k)
    return m


def test_closed_form_matches_source_text():
    assert head(2) == 1026 and total(10) == 11_181_642 and head(10) == 5_130


@pytest.mark.parametrize("k", [2, 3, 10])
def test_strategy_counts(k):
    m = resnet(k)
    tl.freeze(m)
    tl.unfreeze(m, "fc")
    assert tl.count_params(m) == (head(k), total(k))  # feature extraction
    tl.unfreeze(m, "layer4")
    assert tl.count_params(m) == (LAYERS["layer4"] + head(k), total(k))  # partial fine-tuning
    tl.unfreeze(m, ["stem", "layer1", "layer2", "layer3"])
    assert tl.count_params(m) == (total(k), total(k))  # full fine-tuning


def test_summary_line_of_source_text():
    m = resnet(10)
    tl.freeze(m)
    m.fc = nn.Linear(m.fc.in_features, 10)  # the new layer is trainable by default
    assert tl.trainable_summary(m, show=False) == "Trainable: 5,130 / 11,181,642 (0.05%)"


def test_stage_table_rows():
    m = tl.unfreeze_last(resnet(2), 2)
    table = tl.stage_table(m, show=False)
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:8]}
    assert rows["layer3"][1:] == ["0", f"{LAYERS['layer3']:,}", "frozen"]
    assert rows["layer4"][1:] == [f"{LAYERS['layer4']:,}", f"{LAYERS['layer4']:,}", "trainable"]
    assert rows["fc"][1:] == ["1,026", "1,026", "trainable"]
    assert tl.trainable_stages(m) == ["layer4", "fc"]


def test_unfreeze_last_and_bad_stage():
    m = resnet()
    assert tl.trainable_stages(tl.unfreeze_last(m, 1)) == ["fc"]
    assert tl.trainable_stages(tl.unfreeze_last(m, 6)) == tl.stage_names(m)
    with pytest.raises(ValueError, match="k must be between 0 and 6"):
        tl.unfreeze_last(m, 7)
    with pytest.raises(ValueError, match=r"Unknown stage 'layer5'\. Stages of this model: stem, layer1"):
        tl.unfreeze(m, "layer5")


def test_optimizer_gets_trainable_only_and_per_group_lrs():
    m = tl.unfreeze_last(resnet(), 2)
    opt = tl.make_optimizer(m, "adam", lr=1e-3, stage_lrs={"layer4": 1e-4, "fc": 1e-3})
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == LAYERS["layer4"] + head(2)
    with pytest.raises(ValueError, match="Stage 'layer3' has no trainable parameters"):
        tl.param_groups(m, {"layer3": 1e-4})
    with pytest.raises(ValueError, match="Trainable stages without a learning rate: layer4"):
        tl.param_groups(m, {"fc": 1e-3})
    tl.freeze(m)
    with pytest.raises(ValueError, match="no trainable parameters"):
        tl.make_optimizer(m)


def _step(model, opt, x, y):
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_training_step_moves_only_trainable(cat_dog):
    train, _ = cat_dog
    m = tl.unfreeze_last(resnet(), 2)  # layer4 + fc
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = tl.make_optimizer(m, "sgd", lr=0.1)
    x = train.images[:16].float() / 255
    _step(m, opt, x, train.labels[:16])
    for n, p in m.named_parameters():
        if p.requires_grad:
            assert not torch.equal(before[n], p), f"trainable {n} did not change"
        else:
            assert torch.equal(before[n], p), f"frozen {n} changed"
            assert p.grad is None


def test_frozen_batchnorm_stats_stay_put_in_train_mode(cat_dog):
    train, _ = cat_dog
    x = train.images[:64].float() / 255
    y = train.labels[:64]

    # The pitfall: requires_grad=False alone, model.train(): running stats of "frozen" layers drift.
    naive = resnet()
    for p in naive.parameters():
        p.requires_grad = False
    naive.fc = nn.Linear(512, 2)
    stats0 = naive.layer1[0].bn1.running_mean.clone()
    opt = torch.optim.Adam(naive.fc.parameters())
    for i in range(0, 64, 16):
        _step(naive, opt, x[i : i + 16], y[i : i + 16])
    assert not torch.equal(stats0, naive.layer1[0].bn1.running_mean)

    # The fix: tl.freeze keeps frozen BatchNorm layers in eval mode across model.train() calls.
    m = tl.unfreeze_last(resnet(), 2)
    bns = {
        n: (b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone())
        for n, b in m.named_modules()
        if isinstance(b, nn.BatchNorm2d)
    }
    opt = tl.make_optimizer(m, "adam", lr=1e-3)
    for i in range(0, 64, 16):  # one train-mode epoch over 4 batches
        _step(m, opt, x[i : i + 16], y[i : i + 16])
    for n, b in m.named_modules():
        if isinstance(b, nn.BatchNorm2d):
            same = all(
                torch.equal(s, t) for s, t in zip(bns[n], (b.running_mean, b.running_var, b.num_batches_tracked))
            )
            assert same == (not n.startswith("layer4")), n  # frozen stages unchanged, trainable layer4 updates
    # unfreezing lifts the guard
    tl.unfreeze(m, "layer1")
    _step(m, tl.make_optimizer(m), x[:16], y[:16])
    assert not torch.equal(bns["layer1.0.bn1"][0], m.layer1[0].bn1.running_mean)


def test_param_groups_error_names_only_stages_without_a_rate():
    model = torchvision.models.resnet18(num_classes=2)
    tl.set_trainable(model, ["layer4", "fc"])
    with pytest.raises(ValueError, match=r"without a learning rate: layer4;"):
        tl.param_groups(model, {"head": 1e-3})  # "head" is fc: only layer4 lacks a rate
