"""The self-check functions of notebooks 04 and 05 accept right answers and reject typical wrong ones."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from tlhelpers.exercises import nb04, nb05
from tlhelpers.freeze import set_trainable


# ---------------------------------------------------------------- notebook 04

def test_check_filter_right_and_wrong(capsys):
    targets = np.random.default_rng(0).integers(0, 10, size=3000)
    right = np.flatnonzero(np.isin(targets, [3, 5]))
    assert nb04.check_filter(right, targets)
    assert "Correct" in capsys.readouterr().out
    assert not nb04.check_filter(None, targets)
    assert not nb04.check_filter(right[:-1], targets)                        # one missing
    assert not nb04.check_filter(np.flatnonzero(targets == 3), targets)      # cats only
    wrong = right.copy()
    wrong[0] = np.flatnonzero(targets == 0)[0]                               # one of another class
    assert not nb04.check_filter(wrong, targets)
    assert not nb04.check_filter(right[::-1], targets)                       # order lost
    assert "Not yet" in capsys.readouterr().out


def _partial_model() -> nn.Module:
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    return set_trainable(model, ["layer4", "fc"])


def test_check_partial_optimizer_right_and_wrong():
    model = _partial_model()
    right = torch.optim.Adam([{"params": model.layer4.parameters(), "lr": 1e-4},
                              {"params": model.fc.parameters(), "lr": 1e-3}])
    assert nb04.check_partial_optimizer(model, right)
    assert not nb04.check_partial_optimizer(model, None)
    swapped = torch.optim.Adam([{"params": model.layer4.parameters(), "lr": 1e-3},
                                {"params": model.fc.parameters(), "lr": 1e-4}])
    assert not nb04.check_partial_optimizer(model, swapped)
    one_group = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    assert not nb04.check_partial_optimizer(model, one_group)
    with_frozen = torch.optim.Adam([{"params": model.layer4.parameters(), "lr": 1e-4},
                                    {"params": list(model.fc.parameters()) + list(model.layer3.parameters()), "lr": 1e-3}])
    assert not nb04.check_partial_optimizer(model, with_frozen)
    head_only = torch.optim.Adam([{"params": model.fc.parameters(), "lr": 1e-3},
                                  {"params": model.layer4[0].parameters(), "lr": 1e-4}])
    assert not nb04.check_partial_optimizer(model, head_only)                # part of layer4 missing


def test_check_recall_right_precision_and_percent(capsys):
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = torch.tensor([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    assert nb04.check_recall(0.75, labels, preds)                            # 3 of 4 dogs found
    capsys.readouterr()
    assert not nb04.check_recall(0.6, labels, preds)                         # precision: 3 of 5 predicted dogs
    assert "precision" in capsys.readouterr().out
    assert not nb04.check_recall(75.0, labels, preds)
    assert "percent" in capsys.readouterr().out
    assert not nb04.check_recall(None, labels, preds)
    assert nb04.check_recall(torch.tensor(0.75), labels, preds)


# ---------------------------------------------------------------- notebook 05

def test_check_cosine_right_and_wrong(capsys):
    assert nb05.check_cosine(lambda a, b: float(a @ b / (a.norm() * b.norm())))
    assert nb05.check_cosine(lambda a, b: F.cosine_similarity(a, b, dim=0))
    assert not nb05.check_cosine(None)
    assert not nb05.check_cosine(lambda a, b: float(a @ b))
    assert "dot product" in capsys.readouterr().out
    assert not nb05.check_cosine(lambda a, b: float(a @ b / a.norm()))
    assert not nb05.check_cosine(lambda a, b: 1 / 0)                        # errors are reported, not raised
    assert "ZeroDivisionError" in capsys.readouterr().out


def _clusters(n_per: int = 30, k: int = 3, d: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 3
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + torch.randn(len(labels), d, generator=g), labels


def test_check_knn_accepts_majority_vote_and_rejects_others():
    emb, labels = _clusters()
    query, qlabels = _clusters(n_per=10, seed=1)
    from tlhelpers import nearest_neighbors
    idx, _ = nearest_neighbors(query, emb, k=5)
    right = torch.mode(labels[idx], dim=1).values
    assert nb05.check_knn(right, query, emb, labels, k=5)
    assert nb05.check_knn(right.numpy(), query, emb, labels, k=5)
    assert not nb05.check_knn(None, query, emb, labels)
    assert not nb05.check_knn(right[:-1], query, emb, labels, k=5)
    assert not nb05.check_knn((right + 1) % 3, query, emb, labels, k=5)
    top1_wrong = labels[idx[:, 0]].clone()
    top1_wrong[0] = (top1_wrong[0] + 1) % 3
    assert not nb05.check_knn(top1_wrong, query, emb, labels, k=5)


def test_check_outlier():
    emb, _ = _clusters()
    query, _ = _clusters(n_per=5, seed=2)
    query[7] = torch.randn(query.shape[1]) * 0.01 + 50 * torch.eye(query.shape[1])[0]   # far from every cluster direction
    from tlhelpers import nearest_neighbors
    _, sims = nearest_neighbors(query, emb, k=1)
    expected = int(sims[:, 0].argmin())
    assert nb05.check_outlier(expected, query, emb)
    assert nb05.check_outlier(torch.tensor(expected), query, emb)
    assert not nb05.check_outlier(int(sims[:, 0].argmax()), query, emb)
    assert not nb05.check_outlier(None, query, emb)
    assert not nb05.check_outlier((expected + 1) % len(query), query, emb)
