"""Which features transfer best? Logistic-regression probes (cat vs dog, 1,000 train / 2,000 test) on the
pooled layer3 and layer4 features of the course backbone and of a random-init ResNet18, over a range of C.

    python benchmarks/probe_layers.py [checkpoint.pt]
"""
from pathlib import Path
import sys, torch, torchvision, numpy as np, time
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tlhelpers import pretrain as P
from tlhelpers.data import load_cifar_split
from tlhelpers.embed import stage_features
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
path = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "tlhelpers" / "weights" / "course_resnet18.pt")
sd = torch.load(path, weights_only=True)
m = torchvision.models.resnet18(num_classes=8); m.load_state_dict({k: v.float() for k, v in sd.items()})
r = torchvision.models.resnet18(num_classes=8)
tr = load_cifar_split("train", ("cat","dog"), 1000, 0, source="folder"); te = load_cifar_split("test", ("cat","dog"), None, 0, source="folder")
def feats(model, imgs):
    x = P.normalize(imgs, 64)
    return stage_features(model, x, transform=lambda z: z, stages=("layer3","layer4"))
for name, model in (("course", m), ("random", r)):
    ftr, fte = feats(model, tr.images), feats(model, te.images)
    for st in ("layer3", "layer4"):
        sc = StandardScaler().fit(ftr[st].numpy())
        a, b = sc.transform(ftr[st].numpy()), sc.transform(fte[st].numpy())
        res = []
        for C in (0.003, 0.01, 0.03, 0.1, 1.0):
            clf = LogisticRegression(C=C, max_iter=5000).fit(a, tr.labels.numpy())
            res.append(f"C={C}:{clf.score(b, te.labels.numpy()):.4f}")
        print(name, st, " ".join(res), flush=True)
