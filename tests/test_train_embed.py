"""Training loops, feature caching, embeddings, and the course backbone's transfer (direction test)."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tlhelpers as tl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def course():
    model, pre = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    return model, pre


def test_fit_history_and_determinism(cat_dog):
    train, test = cat_dog
    runs = []
    for _ in range(2):
        model, pre = tl.load_backbone(weights="course", num_classes=2, verbose=False)
        tl.freeze(model)
        tl.unfreeze(model, "fc")
        tl.set_seed(0)
        h = tl.fit(
            model,
            tl.make_loader(train, 32, shuffle=True, seed=0),
            tl.make_loader(test, 100),
            epochs=2,
            transform=pre,
            progress=False,
            amp=False,
        )
        runs.append((h, model.fc.weight.detach().clone()))
    h = runs[0][0]
    assert [r["epoch"] for r in h] == [1, 2]
    assert set(h[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    assert h[1]["train_loss"] < h[0]["train_loss"]
    assert torch.equal(runs[0][1], runs[1][1])  # seeded and deterministic on CPU
    assert [r["val_acc"] for r in runs[0][0]] == [r["val_acc"] for r in runs[1][0]]


def test_fit_refuses_all_frozen(cat_dog, course):
    model, pre = course
    tl.freeze(model)
    with pytest.raises(ValueError, match="no trainable parameters"):
        tl.fit(model, tl.make_loader(cat_dog[0], 32), transform=pre, progress=False)


def test_embedding_shapes_batch_of_one(cat_dog, course):
    model, pre = course
    train, _ = cat_dog
    one, lab = tl.embed(model, train.images[:1], pre)
    assert one.shape == (1, 512) and lab is None
    many, labels = tl.embed(model, train, pre, batch_size=64)
    assert many.shape == (len(train), 512) and torch.equal(labels, train.labels)
    # batch size does not change the vectors (beyond bf16 noise); eval mode, no BatchNorm batch effects
    again, _ = tl.embed(model, train.images[:5], pre, batch_size=1, amp=False)
    ref, _ = tl.embed(model, train.images[:5], pre, batch_size=5, amp=False)
    assert torch.allclose(again, ref, atol=1e-4)
    vec = tl.extract_embedding(train.paths[0], model, pre)
    assert isinstance(vec, np.ndarray) and vec.shape == (512,)
    assert np.allclose(vec, tl.embed(model, train.images[:1], pre)[0][0].numpy(), atol=1e-3)


def test_nearest_neighbors_cosine():
    e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    idx, sims = tl.nearest_neighbors(e[0], e, k=2)
    assert idx.tolist() == [[0, 1]] and sims[0, 0].item() == pytest.approx(1.0)
    idx, _ = tl.nearest_neighbors(e, e, k=1, exclude_self=True)
    assert idx[:, 0].tolist() == [1, 0, 1, 2]


def test_fit_head_on_cached_features_matches_model_head(cat_dog, course):
    model, pre = course
    train, test = cat_dog
    tl.freeze(model)
    ftr, ytr = tl.embed(model, train, pre, amp=False)
    fte, yte = tl.embed(model, test, pre, amp=False)
    head, hist = tl.fit_head(ftr, ytr, 2, fte, yte, epochs=20, lr=1e-3, progress=False)
    assert len(hist) == 20 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    model.fc = head  # the cached-feature head drops into the model unchanged
    ev = tl.evaluate(model, tl.make_loader(test, 100), transform=pre, amp=False)
    assert ev["acc"] == pytest.approx(hist[-1]["val_acc"], abs=1e-6)


def test_stage_features_grow_with_depth(cat_dog, course):
    model, pre = course
    feats = tl.stage_features(model, cat_dog[0].images[:4], pre)
    assert [f.shape for f in feats.values()] == [(4, 64), (4, 128), (4, 256), (4, 512)]


@pytest.mark.slow
def test_course_backbone_beats_random_init(cifar_root):
    """Issue 3's claim, asserted: frozen course features >> frozen random features, same head, fixed split."""
    train, test = tl.load_cifar_pair(("cat", "dog"), n_train=1000, n_test=1000, seed=0, source="folder")
    accs = {}
    for w in ("course", "random"):
        tl.set_seed(0)
        model, pre = tl.load_backbone(weights=w, num_classes=2, verbose=False)
        ftr, ytr = tl.embed(model, train, pre)
        fte, yte = tl.embed(model, test, pre)
        mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
        _, hist = tl.fit_head(
            (ftr - mu) / sd, ytr, 2, (fte - mu) / sd, yte, epochs=30, lr=1e-3, weight_decay=1e-3, progress=False
        )
        accs[w] = hist[-1]["val_acc"]
    print(accs)
    assert accs["course"] >= accs["random"] + 0.05, accs  # measured: +7.8 points (64.8% vs 57.0%)


@pytest.mark.slow
def test_course_backbone_layer3_grid_features_beat_random_init(cifar_root):
    """Issue 3's +10 target, with the features benchmarks/probe_levers.py found best: layer3 on a 2x2 grid.

    Logistic regression with a fixed C (the value cross-validation picked there), 1,000 training and all
    2,000 cat/dog test images. The benchmark measured 72.8% vs 62.2% (mean of three random inits), +10.6
    points; against one random init the margin varies by about a point, so this asserts +8.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = tl.load_cifar_split("train", ("cat", "dog"), n=1000, seed=0, source="folder")
    test = tl.load_cifar_split("test", ("cat", "dog"), source="folder")
    accs = {}
    for w in ("course", "random"):
        torch.manual_seed(0)
        model, pre = tl.load_backbone(weights=w, num_classes=8 if w == "random" else None, verbose=False)
        ftr, fte = (tl.stage_features(model, d, pre, stages=("layer3",), grid=2)["layer3"] for d in (train, test))
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.003, max_iter=3000))
        accs[w] = clf.fit(ftr.numpy(), train.labels.numpy()).score(fte.numpy(), test.labels.numpy())
    print(accs)
    assert accs["course"] >= accs["random"] + 0.08, accs


def test_default_batch_size_follows_the_input_size():
    from tlhelpers.embed import BatchPreprocess, default_batch_size
    from tlhelpers.models import Preprocess

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert default_batch_size(None) == 256
    assert default_batch_size(Preprocess(crop_size=64, resize_size=64)) == 256
    assert default_batch_size(Preprocess(crop_size=224, resize_size=256)) == 16  # ImageNet's preset: crop_size [224]
    assert default_batch_size(BatchPreprocess(224, mean, std)) == 16  # an int crop_size
    assert default_batch_size(lambda x: x) == 256
    assert default_batch_size(None, torch.zeros(2, 3, 224, 224)) == 16  # an already preprocessed batch
    assert default_batch_size(None, torch.zeros(2, 3, 32, 32, dtype=torch.uint8)) == 256


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_reuse_freed_memory_is_opt_in_and_can_be_switched_off(tmp_path):
    code = (
        "import torch, tlhelpers as tl\n"
        "import tlhelpers.device as d\n"
        "tl.embed(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), torch.zeros(2, 3, 2, 2, "
        "dtype=torch.uint8))\n"
        "print(d._MALLOC_TUNED, d.reuse_freed_memory(), d._MALLOC_TUNED)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TLHELPERS_MALLOC_TUNE"}
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    off = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "TLHELPERS_MALLOC_TUNE": "0"},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    glibc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    applied = "True" if glibc.startswith("glibc") else "False"
    assert on.stdout.split() == ["None", applied, applied]  # embed leaves the allocator alone; the call applies it
    assert off.stdout.split() == ["None", "False", "False"]


def test_uint8_and_float_input_give_the_same_result_everywhere(cat_dog, course):
    """One input preparation (tl.prepare_batch): uint8 is scaled to [0, 1] once, float is taken as [0, 1]."""
    from tlhelpers.simulator import train_step

    model, _ = course
    u8 = cat_dog[0].images[:8]
    f32 = u8.float() / 255
    p_u8, p_f32 = tl.prepare_batch(u8), tl.prepare_batch(f32)
    assert p_u8.dtype == torch.float32 and torch.allclose(p_u8, p_f32) and p_f32.max() <= 1
    assert p_u8.is_contiguous(memory_format=torch.channels_last)
    e_u8, _ = tl.embed(model, u8, amp=False, fold_bn=False)
    e_f32, _ = tl.embed(model, f32, amp=False, fold_bn=False)
    assert torch.allclose(e_u8, e_f32, atol=1e-5)
    s_u8 = tl.stage_features(model, u8, amp=False)["layer2"]
    assert torch.allclose(s_u8, tl.stage_features(model, f32, amp=False)["layer2"], atol=1e-5)
    labels = cat_dog[0].labels[:8]
    a = train_step(copy.deepcopy(model), u8, labels, ["fc"], lr=0.0)
    b = train_step(copy.deepcopy(model), f32, labels, ["fc"], lr=0.0)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)  # the simulator no longer divides float input by 255 again


# ---------------------------------------------------------------- embed's optional fast paths (public API)


def test_fold_bn_fast_path_gives_the_same_features(cat_dog):
    import torch

    import tlhelpers as tl
    from tlhelpers.embed import fold_batchnorm

    train, _ = cat_dog
    model, preprocess = tl.load_backbone("resnet18", weights="course", num_classes=2, verbose=False)
    tl.freeze(model)
    model.train()
    images = train.images[:6]
    ref, _ = tl.embed(model, images, preprocess, amp=False)
    fast, _ = tl.embed(model, images, preprocess, amp=False, fold_bn=True)
    assert fast.shape == ref.shape == (6, 512)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # model untouched
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert model.training  # folding traced the eval branch and put the mode back


def test_fold_batchnorm_shares_what_it_does_not_fold_and_leaves_the_model_alone():
    import copy

    import torch
    import torch.nn as nn
    import torchvision

    from tlhelpers.embed import fold_batchnorm

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(2):
            model(torch.randn(8, 3, 64, 64))
    before = copy.deepcopy(model.state_dict())
    folded = fold_batchnorm(model, torch.bfloat16)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and all(c.weight.dtype == torch.bfloat16 and c.bias is not None for c in convs)
    assert folded.fc is model.fc  # shared, not copied
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # the model keeps its own layers
    model.eval()
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        out = fold_batchnorm(model)(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = folded(x).float()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert (low - ref).abs().max() < 0.05 * ref.abs().max()  # bf16 rounding, not a different function

    class PreActivation(nn.Module):  # BatchNorm before the conv, and a conv whose output is also used raw
        def __init__(self):
            super().__init__()
            self.bn0, self.conv, self.bn1 = nn.BatchNorm2d(3), nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.conv(self.bn0(x))
            return self.bn1(y) + y

    pre = PreActivation().eval()
    kept = fold_batchnorm(pre)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in kept.modules()) == 2  # nothing foldable: both stay
    torch.testing.assert_close(kept(x), pre(x))

    class DataDependent(PreActivation):  # torch.fx cannot trace this: the model itself is returned
        def forward(self, x):
            return self.bn1(self.conv(x)) if x.sum() > 0 else x

    odd = DataDependent().eval()
    assert fold_batchnorm(odd) is odd


def test_batch_preprocess_matches_the_torchvision_preset(cat_dog):
    import torch

    from tlhelpers.embed import BatchPreprocess, fast_preprocess
    from tlhelpers.models import Preprocess

    images = cat_dog[1].images[:16]
    for preset in (
        Preprocess(crop_size=224, resize_size=224),  # CIFAR upscaled, the benchmark's case
        Preprocess(crop_size=24, resize_size=28, mean=[0.5] * 3, std=[0.25] * 3),
    ):  # downscaled
        fast = fast_preprocess(preset)
        assert isinstance(fast, BatchPreprocess)
        ref, out = preset(images), fast(images)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert (out - ref).abs().max().item() < 0.02  # only the preset's uint8 rounding of the resized image differs
    odd = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)  # non-square: shorter side, then centre crop
    preset = Preprocess(crop_size=24, resize_size=28)
    assert (fast_preprocess(preset)(odd) - preset(odd)).abs().max().item() < 0.02
    assert fast_preprocess(abs) is abs  # anything else is returned unchanged
