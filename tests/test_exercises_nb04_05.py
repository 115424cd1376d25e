"""The self-check functions of notebooks 04 and 05 accept right answers and reject typical wrong ones."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tlhelpers.exercises import nb04, nb05

# ---------------------------------------------------------------- notebook 04


def test_check_balanced_first_right_and_wrong(capsys):
    targets = np.random.default_rng(0).integers(0, 10, size=20000)
    right = np.sort(np.concatenate([np.flatnonzero(targets == c)[:500] for c in (3, 5)]))
    assert nb04.check_balanced_first(right, targets)
    assert "Correct" in capsys.readouterr().out
    assert not nb04.check_balanced_first(None, targets)
    assert not nb04.check_balanced_first(right[:-1], targets)  # one missing
    first_1000 = np.flatnonzero(np.isin(targets, [3, 5]))[:1000]  # the source's unbalanced first 1,000
    assert not nb04.check_balanced_first(first_1000, targets) or np.bincount(targets[first_1000])[3] == 500
    later = np.sort(np.concatenate([np.flatnonzero(targets == c)[-500:] for c in (3, 5)]))
    assert not nb04.check_balanced_first(later, targets)
    assert "not the *first* images" in capsys.readouterr().out
    assert not nb04.check_balanced_first(right[::-1], targets)  # order lost
    assert "increasing order" in capsys.readouterr().out


def test_check_remap_right_wrong_and_slow(capsys):
    def lut_remap(labels, selected):
        lut = torch.full((int(max(selected)) + 1,), -1, dtype=torch.long)
        lut[torch.tensor(selected)] = torch.arange(len(selected))
        return lut[labels]

    assert nb04.check_remap(lut_remap)
    assert "Correct" in capsys.readouterr().out
    assert not nb04.check_remap(None)
    assert not nb04.check_remap(lambda labels, selected: None)  # the notebook's stub
    assert "returns None" in capsys.readouterr().out
    assert not nb04.check_remap(lambda labels, selected: (labels == 5).long())  # only right for [3, 5]
    assert not nb04.check_remap(lambda labels, selected: torch.searchsorted(torch.tensor(sorted(selected)), labels))
    assert not nb04.check_remap(lambda labels, selected: selected.index("x"))  # raises
    assert "ValueError" in capsys.readouterr().out
    assert not nb04.check_remap(lambda labels, selected: torch.tensor([selected.index(v.item()) for v in labels]))
    assert "Python loop" in capsys.readouterr().out


def test_check_recall_right_precision_and_percent(capsys):
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = torch.tensor([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    assert nb04.check_recall(0.75, labels, preds)  # 3 of 4 dogs found
    capsys.readouterr()
    assert not nb04.check_recall(0.6, labels, preds)  # precision: 3 of 5 predicted dogs
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
    assert not nb05.check_cosine(lambda a, b: None)  # the notebook's stub
    assert "returns None" in capsys.readouterr().out
    assert not nb05.check_cosine(lambda a, b: float(a @ b))
    assert "dot product" in capsys.readouterr().out
    assert not nb05.check_cosine(lambda a, b: float(a @ b / a.norm()))
    assert not nb05.check_cosine(lambda a, b: 1 / 0)  # errors are reported, not raised
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
    query[7] = (
        torch.randn(query.shape[1]) * 0.01 + 50 * torch.eye(query.shape[1])[0]
    )  # far from every cluster direction
    from tlhelpers import nearest_neighbors

    _, sims = nearest_neighbors(query, emb, k=1)
    expected = int(sims[:, 0].argmin())
    assert nb05.check_outlier(expected, query, emb)
    assert nb05.check_outlier(torch.tensor(expected), query, emb)
    assert not nb05.check_outlier(int(sims[:, 0].argmax()), query, emb)
    assert not nb05.check_outlier(None, query, emb)
    assert not nb05.check_outlier((expected + 1) % len(query), query, emb)


def test_viz_is_an_attribute_of_the_package():
    """The notebooks call tl.viz.show_images(...) after `import tlhelpers as tl`."""
    import tlhelpers as tl

    assert callable(tl.viz.show_images) and callable(tl.viz.plot_embeddings)
    assert tl.exercises.nb05.check_cosine is nb05.check_cosine


def test_plot_embeddings_few_points_and_show_neighbors_edge_cases():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    from tlhelpers import viz

    x = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
    pts = viz.plot_embeddings(x, [0, 1, 0, 1], classes=["cat", "dog"])  # t-SNE needs perplexity < n
    assert pts.shape == (4, 2)
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        viz.plot_embeddings(x[:2], [0, 1])
    imgs = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    fig = viz.show_neighbors(imgs[0], imgs, [], [])  # k = 0: the query alone
    assert len(fig.axes) == 1
    fig = viz.show_neighbors(imgs[0], imgs, [1, 2], [0.9, 0.8], labels=[0, 1, 0, 1, 0], classes=["cat", "dog"])
    assert [a.get_title() for a in fig.axes[1:]] == ["dog\ncos 0.90", "cat\ncos 0.80"]
    plt.close("all")


def test_nb05_k_choice_accepts_only_ks_within_noise(capsys):
    rng = np.random.default_rng(0)
    accs = {1: 0.60, 3: 0.70, 5: 0.72, 10: 0.71, 40: 0.50}
    val = {k: rng.permutation(np.arange(400) < round(a * 400)) for k, a in accs.items()}
    assert nb05.check_k_choice(5, val)  # the best
    assert nb05.check_k_choice(10, val)  # 1 point below on 400 images: a tie
    assert "as good as the best within noise" in capsys.readouterr().out
    assert not nb05.check_k_choice(1, val)
    assert "is worse than 5" in capsys.readouterr().out
    assert not nb05.check_k_choice(40, val)
    assert not nb05.check_k_choice(7, val)  # never measured
    assert "measured" in capsys.readouterr().out
    assert not nb05.check_k_choice(None, val)
    # fewer validation images: wider noise, k=1 (12 points below) becomes a tie on 40 images
    few = {k: rng.permutation(np.arange(40) < round(a * 40)) for k, a in accs.items()}
    assert nb05.check_k_choice(1, few)


def test_check_early_stop(capsys):
    losses = [0.60, 0.50, 0.55, 0.58, 0.45, 0.70]
    hist = [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(losses)]
    assert nb04.check_early_stop((4, 2), hist, patience=2)  # epochs 3 and 4 bring no lower loss
    assert nb04.check_early_stop((6, 5), hist, patience=3)  # epoch 5 is better again: it runs to the end, keeps 5
    assert not nb04.check_early_stop((6, 2), hist, patience=2)
    assert not nb04.check_early_stop(None, hist) and not nb04.check_early_stop("x", hist)
    assert not nb04.check_early_stop((4, 5), hist, patience=2) and "lowest validation loss" in capsys.readouterr().out


def test_check_early_stop_on_validation_accuracy_ties_to_lower_loss():
    accs, losses = [0.70, 0.75, 0.75, 0.74, 0.73], [0.50, 0.55, 0.52, 0.60, 0.70]
    hist = [{"epoch": i + 1, "val_acc": a, "val_loss": v} for i, (a, v) in enumerate(zip(accs, losses))]
    # epoch 3 ties epoch 2 on accuracy with a lower loss: it is better; epochs 4 and 5 are not -> stop after 5
    assert nb04.check_early_stop((5, 3), hist, patience=2, monitor="val_acc")
    assert not nb04.check_early_stop((5, 2), hist, patience=2, monitor="val_acc")
    assert nb04.check_early_stop((3, 1), hist, patience=2)  # on the loss: epoch 1 is best, 2 and 3 are worse
