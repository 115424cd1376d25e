"""The one training loop (its hook, its log, its argument checks) and the one reader of model files."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn as nn

import tlhelpers as tl
from tlhelpers import modelfile
from tlhelpers.train import train_steps


def _blobs(n: int = 64, k: int = 2, dim: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    return torch.randn(n, dim, generator=g) + 3 * y[:, None].float(), y


def _images(labels: torch.Tensor, seed: int = 0) -> tl.ImageTensors:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (len(labels), 3, 16, 16), dtype=torch.uint8, generator=g)
    x[labels == 1, 0] += 180  # class 1 is red: learnable in a few steps
    return tl.ImageTensors(x, labels, ["grey", "red"])


class _Pool(nn.Module):
    """A tiny image classifier: mean colour -> linear head (``fc``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.float().mean((2, 3)))


# ---------------------------------------------------------------- the loop and its hook


def test_train_steps_hook_sees_every_step_and_can_stop():
    x, y = _blobs(40)
    head = nn.Linear(4, 2)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    seen = []

    def on_step(step: int, loss: float) -> bool:
        seen.append((step, loss))
        return step == 2  # stop after the third step

    def loss_of(xb, yb):
        logits = head(xb)
        return nn.functional.cross_entropy(logits, yb), logits

    before = head.weight.detach().clone()
    out = train_steps(((x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)), loss_of, opt, on_step=on_step)
    assert [s for s, _ in seen] == [0, 1, 2] and out["steps"] == 3 and out["stopped"]
    assert all(loss > 0 for _, loss in seen) and not torch.equal(before, head.weight)
    out = train_steps(((x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)), loss_of, opt)
    assert out["steps"] == 5 and not out["stopped"] and 0 <= out["train_acc"] <= 1
    with pytest.raises(ValueError, match="no batches"):
        train_steps(iter([]), loss_of, opt)


def test_fit_head_equals_a_hand_written_loop():
    """fit_head through the shared loop gives the weights of the loop it replaced, to the bit."""
    x, y = _blobs(50)
    head, _ = tl.fit_head(x, y, 2, epochs=3, lr=1e-2, batch_size=16, seed=3, progress=False)
    g = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        ref = nn.Linear(4, 2)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(3):
        perm = torch.randperm(50, generator=g)
        for i in range(0, 50, 16):
            idx = perm[i : i + 16]
            loss = nn.functional.cross_entropy(ref(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    assert torch.equal(head.weight, ref.weight) and torch.equal(head.bias, ref.bias)


def test_fit_takes_the_recipe():
    x, y = _blobs(60)
    r = tl.recipe("feature extraction")
    _, h = tl.fit_head(x[:40], y[:40], 2, x[40:], y[40:], recipe=r, progress=False)
    _, ref = tl.fit_head(
        x[:40], y[:40], 2, x[40:], y[40:], epochs=r.head_epochs, lr=r.head_lr, weight_decay=r.weight_decay,
        keep_best=True, patience=r.patience, progress=False,
    )  # fmt: skip
    assert [e["val_loss"] for e in h] == [e["val_loss"] for e in ref] and sum(e.get("best", 0) for e in h) == 1
    model, _ = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    data = _images(torch.arange(8) % 2)
    loader = tl.make_loader(data, 4)
    h = tl.fit(model, loader, loader, 1, recipe="partial fine-tuning", progress=False, amp=False)
    assert tl.trainable_stages(model) == ["layer4", "fc"] and h[0].get("best")


@pytest.mark.parametrize("epochs", [-1, 0, 1.5, True, "2"])
def test_fit_refuses_epochs_that_are_not_whole_and_positive(epochs):
    loader = tl.make_loader(_images(torch.arange(8) % 2), 4)
    with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1, got"):
        tl.fit(_Pool(), loader, epochs=epochs, progress=False)
    with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1"):
        tl.fit_head(*_blobs(8), 2, epochs=epochs, progress=False)


def test_fine_tune_without_head_epochs_runs_phase_two_only(capsys):
    model, pre = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    data = _images(torch.arange(24) % 2)
    train, val = tl.train_val_split(data, 0.25)
    hist = tl.fine_tune(
        model, tl.make_loader(train, 6), tl.make_loader(val, 6), lr=1e-3, transform=pre, head_epochs=0, epochs=1
    )
    assert [(h["phase"], h["epoch"]) for h in hist] == [(2, 1)] and hist[0]["best"]
    out = capsys.readouterr()
    assert "Phase 1" not in out.out and "history is empty" not in out.out + out.err
    with pytest.raises(ValueError, match="both 0"):
        tl.fine_tune(model, tl.make_loader(train, 6), tl.make_loader(val, 6), lr=1e-3, head_epochs=0, epochs=0)
    with pytest.raises(ValueError, match="head_epochs must be a whole number >= 0"):
        tl.fine_tune(model, tl.make_loader(train, 6), tl.make_loader(val, 6), lr=1e-3, head_epochs=-1)


def test_fine_tune_logs_one_numbering(capsys):
    model, pre = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    train, val = tl.train_val_split(_images(torch.arange(24) % 2), 0.25)
    tl.fine_tune(model, tl.make_loader(train, 6), tl.make_loader(val, 6), lr=1e-3, head_epochs=1, epochs=2)
    err = capsys.readouterr().err
    assert "phase 1, epoch 1 of 1" in err
    assert "phase 2, epoch 1 of 2 (epoch 2 overall)" in err and "phase 2, epoch 2 of 2 (epoch 3 overall)" in err


# ---------------------------------------------------------------- the log


def test_early_stop_closes_the_bar_full_and_says_so(capsys):
    x, y = _blobs(40)
    vy = 1 - y[:20]  # validation labels flipped: the val loss rises from the start, patience 2 stops at epoch 3
    _, h = tl.fit_head(x[:20], y[:20], 2, x[:20], vy, epochs=10, lr=0.1, patience=2, desc="probe")
    assert len(h) == 3
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "probe: stopped early after epoch 3 of 10" in last and "3/3" in last and "100%" in last


def test_fit_bars_carry_the_label(capsys):
    loader = tl.make_loader(_images(torch.arange(8) % 2), 4)
    tl.fit(_Pool(), loader, epochs=2, desc="partial (layer4+fc)", amp=False)
    err = capsys.readouterr().err
    assert "partial (layer4+fc), epoch 1 of 2" in err and "partial (layer4+fc), epoch 2 of 2" in err


# ---------------------------------------------------------------- evaluate: beyond accuracy


class _Always(nn.Module):
    def __init__(self, k: int = 0) -> None:
        super().__init__()
        self.w, self.k = nn.Parameter(torch.zeros(1)), k

    def forward(self, x):
        out = torch.zeros(len(x), 3) + self.w
        out[:, self.k] = 1
        return out


def test_evaluate_reports_balanced_accuracy_and_warns_at_the_majority_share():
    labels = torch.tensor([0] * 20 + [1] * 2 + [2] * 0 + [1] * 0)  # 10:1, class 2 absent
    loader = tl.make_loader(_images(labels.clamp(max=1)), 8)
    with pytest.warns(UserWarning, match=r"accuracy 90\.9% does not beat the majority class's share of 90\.9%"):
        ev = tl.evaluate(_Always(0), loader, amp=False)
    assert ev["acc"] == pytest.approx(20 / 22) and ev["balanced_acc"] == pytest.approx(0.5)
    assert ev["recall"][:2] == [1.0, 0.0] and ev["recall"][2] != ev["recall"][2]  # nan: no class-2 examples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tl.evaluate(_Always(0), loader, amp=False, warn=False)


# ---------------------------------------------------------------- the model file: one reader, clear messages


@pytest.fixture
def saved(tmp_path):
    model, pre = tl.load_backbone("resnet18", weights="random", num_classes=2, verbose=False)
    return tl.save_model(model, tmp_path / "m.pt", pre, ["cat", "dog"]), model, pre


def _edit(path, out, **changes):
    rec = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if v is None:
            rec.pop(k)
        else:
            rec[k] = v
    torch.save(rec, out)
    return out


class Payload:
    """Any class: weights_only loading refuses to rebuild it (a crafted one could run code)."""


def test_a_pickle_is_refused_for_safety_not_called_damaged(tmp_path):
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "extra": Payload()}, tmp_path / "evil.pt")
    for load in (tl.load_model, lambda p: tl.load_backbone(weights=p, verbose=False)):
        with pytest.raises(ValueError) as e:
            load(tmp_path / "evil.pt")
        msg = str(e.value)
        assert "not a plain tensor file (refused by weights_only for safety)" in msg and "damaged" not in msg
        assert msg.endswith("came from.") and "\n" not in msg


def test_model_file_messages_name_the_version_or_the_field(saved, tmp_path):
    path, _, _ = saved
    v2 = _edit(path, tmp_path / "v2.pt", format="tlhelpers-model/2")
    with pytest.raises(ValueError, match=r"v2\.pt is a tlhelpers-model file of format version 2; this tlhelpers "):
        tl.load_model(v2)
    for field in ("preprocessing", "classes"):
        f = _edit(path, tmp_path / f"no_{field}.pt", **{field: None})
        with pytest.raises(ValueError, match=rf"no_{field}\.pt has no '{field}' field, which every tlhelpers-model"):
            tl.load_model(f)
        with pytest.raises(ValueError, match=rf"has no '{field}' field"):
            tl.load_backbone(weights=f, verbose=False)
    rec = torch.load(path, weights_only=True)
    zero = _edit(path, tmp_path / "zero.pt", preprocessing={**rec["preprocessing"], "size": 0})
    with pytest.raises(ValueError, match=r"zero\.pt: its preprocessing has size 0, not a whole number of pixels"):
        tl.load_model(zero)
    three = _edit(path, tmp_path / "three.pt", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"three\.pt names 3 classes but its head has 2 outputs"):
        tl.load_backbone(weights=three, verbose=False)
    model, pre = tl.load_backbone(weights=path, verbose=False)  # the good file still loads, with its own size
    assert model.fc.out_features == 2 and pre.crop_size == [64]


def test_damaged_file_message_is_whole(saved, tmp_path):
    path, _, _ = saved
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError) as e:
        tl.load_model(tmp_path / "cut.pt")
    assert str(e.value).startswith(f"Cannot read checkpoint {tmp_path / 'cut.pt'}: it is damaged or not a PyTorch")
    assert str(e.value).endswith("). Copy it again.")


def test_sidecar_preprocessing_goes_through_the_same_checks(saved, tmp_path):
    _, model, _ = saved
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    (tmp_path / "bare.json").write_text(json.dumps({"preprocessing": {"size": 0, "mean": [0] * 3, "std": [1] * 3}}))
    with pytest.raises(ValueError, match=r"bare\.json: its preprocessing has size 0"):
        tl.load_backbone(weights=tmp_path / "bare.pt", verbose=False)
    assert modelfile.FORMAT == tl.saving.MODEL_FORMAT == "tlhelpers-model/1"


# ---------------------------------------------------------------- pretrain runs on the same loop


def test_pretrain_runs_on_the_shared_loop_with_the_models_preprocessing(tmp_path, monkeypatch):
    from tlhelpers import pretrain as P

    def tiny(split, classes, n, seed, source=None):
        labels = torch.arange(32) % len(classes)
        g = torch.Generator().manual_seed(1 if split == "test" else 0)
        return tl.ImageTensors(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=g), labels, classes)

    monkeypatch.setattr(P, "load_cifar_split", tiny)
    meta = P.pretrain(tmp_path, epochs=2, size=32, batch_size=8, lr=0.05, log=lambda *_: None)
    assert [h["epoch"] for h in meta["history"]] == [1, 2] and "test_acc" in meta["history"][-1]
    assert all(math.isfinite(h["train_loss"]) and 0 <= h["train_acc"] <= 1 for h in meta["history"])
    sd = torch.load(tmp_path / "course_resnet18.pt", weights_only=True)
    assert sd["fc.weight"].shape == (8, 512) and sd["fc.weight"].dtype == torch.float16
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(P.normalize(x, 32), tl.prepare_batch(x.float() / 255, None, P.preprocessing(32)))


# ---------------------------------------------------------------- selection refuses the test set


class _NamedSplit(torch.utils.data.Dataset):
    """A dataset that carries the name of its split, as ``stats`` names splits."""

    def __init__(self, data: tl.ImageTensors, split: str) -> None:
        self.data, self.split = data, split

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def test_fit_refuses_to_select_on_a_split_named_test():
    data = _images(torch.arange(8) % 2)
    loader = tl.make_loader(data, 4)
    with pytest.raises(ValueError, match="selects on test data.*validation"):
        tl.fit(_Pool(), loader, loader, epochs=1, keep_best=True, val_split="test", progress=False, amp=False)
    with pytest.raises(ValueError, match="selects on test data"):
        tl.fit(_Pool(), loader, loader, epochs=2, patience=1, val_split="Test set", progress=False, amp=False)
    named = torch.utils.data.DataLoader(_NamedSplit(data, "test"), batch_size=4)
    with pytest.raises(ValueError, match="'test'"):
        tl.fit(_Pool(), loader, named, epochs=1, keep_best=True, progress=False, amp=False)
    # no selection: a test loader may be measured each epoch (nothing is chosen on it)
    h = tl.fit(_Pool(), loader, named, epochs=1, keep_best=False, progress=False, amp=False)
    assert "val_acc" in h[0]
    # a validation split passes
    tl.fit(_Pool(), loader, loader, epochs=1, keep_best=True, val_split="validation", progress=False, amp=False)


def test_fit_head_refuses_to_select_on_a_split_named_test():
    x, y = _blobs(20)
    with pytest.raises(ValueError, match="selects on test data"):
        tl.fit_head(x, y, 2, x, y, epochs=2, keep_best=True, val_split="test", progress=False)
    tl.fit_head(x, y, 2, x, y, epochs=2, keep_best=True, val_split="val", progress=False)
