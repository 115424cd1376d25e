"""Validation discipline: the split, early stopping with the best epoch's weights, the shared recipe, and the
plain PyTorch loop that tl.fit writes once."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import tlhelpers as tl
from tlhelpers.recipe import RECIPES, RESNET_STAGES, recipe_table


def _toy(n_per_class=(30, 10, 5), seed=0) -> tl.ImageTensors:
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    images = torch.randint(0, 256, (len(labels), 3, 8, 8), dtype=torch.uint8, generator=g)
    return tl.ImageTensors(images, labels, ["a", "b", "c"][: len(n_per_class)])


# ---------------------------------------------------------------- the split


def test_split_is_stratified_seeded_and_disjoint():
    data = _toy((30, 10, 5))
    data.paths = [f"img{i}.jpg" for i in range(len(data))]
    tr, va = tl.train_val_split(data, val_fraction=0.2, seed=1)
    assert torch.bincount(va.labels, minlength=3).tolist() == [6, 2, 1]
    assert torch.bincount(tr.labels, minlength=3).tolist() == [24, 8, 4]
    assert set(tr.paths).isdisjoint(va.paths) and len(set(tr.paths) | set(va.paths)) == len(data)
    tr2, va2 = tl.train_val_split(data, val_fraction=0.2, seed=1)
    assert va2.paths == va.paths and tr2.paths == tr.paths
    _, va3 = tl.train_val_split(data, val_fraction=0.2, seed=2)
    assert va3.paths != va.paths
    assert va.classes == data.classes


def test_split_on_real_images(cat_dog):
    train, _ = cat_dog
    tr, va = tl.train_val_split(train, 0.25)
    assert len(tr) == 150 and len(va) == 50
    assert torch.bincount(va.labels).tolist() == [25, 25]
    # labels stay attached to their images
    idx = [train.paths.index(p) for p in va.paths[:10]]
    assert torch.equal(train.images[idx], va.images[:10]) and torch.equal(train.labels[idx], va.labels[:10])


def test_split_errors_are_clear():
    with pytest.raises(ValueError, match="Class 'c' has 1 image"):
        tl.train_val_split(_toy((5, 5, 1)))
    with pytest.raises(ValueError, match="val_fraction"):
        tl.train_val_split(_toy(), val_fraction=1.5)
    with pytest.raises(TypeError, match="ImageTensors"):
        tl.train_val_split([1, 2, 3])


# ---------------------------------------------------------------- early stopping


class _Scripted(nn.Module):
    """A model whose validation loss follows a script: its one weight is set per epoch by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.stack([self.w.expand(len(x)), -self.w.expand(len(x))], 1)


def test_keep_best_restores_the_best_epochs_weights_and_patience_stops():
    x, y = torch.zeros(8, 3, 2, 2), torch.zeros(8, dtype=torch.long)
    train = tl.ImageTensors((x * 0).to(torch.uint8), y, ["a", "b"])
    loader = tl.make_loader(train, 8)
    model = _Scripted()
    # SGD with lr 1 on this loss pushes w up every epoch: val loss falls, so the last epoch is the best ...
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    hist = tl.fit(model, loader, loader, epochs=3, optimizer=opt, keep_best=True, progress=False, amp=False)
    assert tl.best_epoch(hist)["epoch"] == 3
    # ... with the labels flipped on validation, the val loss rises every epoch: epoch 1 is best, patience 2 stops
    val = tl.ImageTensors(train.images, torch.ones(8, dtype=torch.long), ["a", "b"])
    model = _Scripted()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    hist = tl.fit(
        model,
        loader,
        tl.make_loader(val, 8),
        epochs=10,
        optimizer=opt,
        keep_best=True,
        patience=2,
        progress=False,
        amp=False,
    )
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert tl.best_epoch(hist)["epoch"] == 1 and hist[0]["val_loss"] < hist[-1]["val_loss"]
    ev = tl.evaluate(model, tl.make_loader(val, 8), amp=False)
    assert ev["loss"] == pytest.approx(hist[0]["val_loss"], abs=1e-6)  # the epoch-1 weights are back
    assert model.w.item() == pytest.approx(1.0)  # one SGD step of lr 1 on d(loss)/dw = -1 ... from w = 0


def test_selection_needs_validation_data():
    train = _toy((4, 4))
    with pytest.raises(ValueError, match="validation"):
        tl.fit(_Scripted(), tl.make_loader(train, 4), None, keep_best=True, progress=False)
    with pytest.raises(ValueError, match="patience"):
        tl.fit(_Scripted(), tl.make_loader(train, 4), tl.make_loader(train, 4), patience=0, progress=False)


def test_fit_head_keep_best_on_real_features(cat_dog):
    train, _ = cat_dog
    tr, va = tl.train_val_split(train, 0.5)
    model, pre = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    ftr, ytr = tl.embed(model, tr, pre)
    fva, yva = tl.embed(model, va, pre)
    state = torch.random.get_rng_state()
    head, hist = tl.fit_head(ftr, ytr, 2, fva, yva, epochs=30, lr=1e-2, keep_best=True, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is left alone
    best = tl.best_epoch(hist)
    assert best["val_loss"] == min(h["val_loss"] for h in hist)
    with torch.no_grad():
        vloss = nn.functional.cross_entropy(head(fva), yva).item()
    assert vloss == pytest.approx(best["val_loss"], abs=1e-5)
    assert best["val_acc"] > 0.55  # pretrained features beat chance on real cat/dog images


# ---------------------------------------------------------------- the recipe


def test_recipe_is_the_one_source_of_strategy_settings():
    from tlhelpers import strategy

    assert strategy.STAGES == {s: list(RECIPES[s].trainable) for s in strategy.STRATEGIES}
    assert RECIPES["feature extraction"].cached and not RECIPES["full fine-tuning"].cached
    assert RECIPES["full fine-tuning"].trainable == RESNET_STAGES
    assert strategy.HEAD_LR == RECIPES["full fine-tuning"].head_lr  # one head rate in every strategy
    table = recipe_table()
    assert table.count("\n") == 1 + len(RECIPES) and "1e-4" in table
    with pytest.raises(ValueError, match="Unknown strategy 'partial'"):
        tl.recipe("partial")


def test_recipe_apply_sets_trainable_stages_and_rates():
    model, _ = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    opt = tl.recipe("partial fine-tuning").apply(model)
    assert tl.trainable_stages(model) == ["layer4", "fc"]
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"layer4": 1e-4, "fc": 1e-3}
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == tl.count_params(model)[0]
    opt = tl.recipe("full fine-tuning").apply(model)
    assert tl.trainable_stages(model) == list(RESNET_STAGES)
    assert tl.recipe("feature extraction").apply(model).param_groups[0]["name"] == "fc"
    assert tl.epochs_for(100) > tl.epochs_for(10_000) and tl.epochs_for(100, quick=True) == 1
    assert tl.train_batch_size(64) == 32 and tl.train_batch_size(224, "cpu") == 8


# ---------------------------------------------------------------- tl.fit is the plain loop, written once


def test_plain_loop_and_fit_give_the_same_numbers(cat_dog):
    train, _ = cat_dog
    tr, va = tl.train_val_split(train, 0.25)
    base, pre = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.set_trainable(base, ["layer4", "fc"])

    def loaders():
        return tl.make_loader(tr, 32, shuffle=True, seed=0), tl.make_loader(va, 64)

    # the plain PyTorch loop
    model = copy.deepcopy(base)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    train_loader, val_loader = loaders()
    plain = []
    for _ in range(2):
        model.train()
        for x, y in train_loader:
            loss = nn.functional.cross_entropy(model(pre(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        correct, total = 0, 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(pre(x)).argmax(1) == y).sum().item()
                total += len(y)
        plain.append(correct / total)

    # the same with tl.fit
    model2 = copy.deepcopy(base)
    opt2 = torch.optim.Adam([p for p in model2.parameters() if p.requires_grad], lr=1e-4)
    train_loader, val_loader = loaders()
    hist = tl.fit(model2, train_loader, val_loader, epochs=2, optimizer=opt2, transform=pre, amp=False, progress=False)
    assert [h["val_acc"] for h in hist] == pytest.approx(plain, abs=1 / len(va) + 1e-9)
    # the same weights up to float rounding (tl.fit feeds channels_last batches: other summation orders)
    pairs = [
        (p, q, b) for p, q, b in zip(model.parameters(), model2.parameters(), base.parameters()) if p.requires_grad
    ]
    apart = torch.sqrt(sum(((p - q) ** 2).sum() for p, q, _ in pairs))
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, _, b in pairs))
    assert apart < 0.05 * moved  # the two runs' weights differ by under 5% of how far training moved them


# ---------------------------------------------------------------- bad input, one clear error each


def test_bad_inputs_give_one_clear_error(cifar_root, tmp_path):
    with pytest.raises(TypeError, match="whole number or None.*100.0"):
        tl.load_cifar_pair(n_train=100.0, n_test=20)
    model, pre = tl.load_backbone("resnet18", weights="course", verbose=False)
    with pytest.raises(ValueError, match="Nothing to embed"):
        tl.embed(model, torch.empty(0, 3, 32, 32, dtype=torch.uint8), pre)
    with pytest.raises(ValueError, match="at least one"):
        tl.fit_head(torch.empty(0, 512), torch.empty(0, dtype=torch.long), 2, progress=False)
    good = tmp_path / "model.pt"
    torch.save(model.state_dict(), good)
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"Cannot read checkpoint .*truncated\.pt: it is damaged"):
        tl.load_backbone("resnet18", weights=bad, verbose=False)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        tl.load_checkpoint(model, text)
