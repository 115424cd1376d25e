"""Performance benchmark: the source text's cat-vs-dog workflow (the anchor) against the course's, in one run.

    flock /tmp/tl-cpu.lock python benchmarks/perf_workflow.py        # full run, about 15 minutes on 2 cores
    python benchmarks/perf_workflow.py --no-scaling --no-ablation    # just the side-by-side table (~2 min)
    python benchmarks/perf_workflow.py --course-only --n-train 40 --n-test 20 --sizes 16 32 --out /tmp/b  # smoke

What it runs, each workflow in its own subprocess (so per-process peak RSS is its own ``ru_maxrss``):

* **anchor**: ``../shared/anchors/seed_cifar_workflow.py``, unchanged, in a temp dir whose ``./data`` links
  to CIFAR-10 batches rebuilt once by the anchor folder's ``make_cifar_batches.py`` (cached under
  ``~/.cache/tlhelpers/bench``; building them is not timed), with ``$TORCH_HOME`` holding a stand-in
  ``resnet18-f37072fd.pth``: the course backbone in fp32 with its 8-class ``fc`` zero-padded to 1000
  classes (the anchor replaces ``fc`` anyway), so both sides start from the same weights.
* **course**: the same 1,000 / 200 images (the anchor's *first* cat/dog indices in batch order, found from
  the labels alone), the same weights, 224 px with ImageNet mean/std, batch 32, Adam 1e-3, one epoch,
  through ``tlhelpers``: decode only the selected JPEGs, batched tensor preprocessing, ``tl.embed`` (frozen
  backbone run once: inference_mode, channels_last, BatchNorm folded into the convolutions, bf16 autocast
  where the CPU has native bf16, glibc keeping freed memory: ``tl.device.reuse_freed_memory()``) and
  ``tl.fit_head`` on the cached features.
* **ablation**: what each technique buys (forward-pass ladder, transforms, caching, bf16 vs fp32 accuracy).
* **scaling**: time vs number of training images for both approaches (plot).

Results: ``benchmarks/results/perf.json`` (schema in ``perf.common.SCHEMA``), ``perf.md``, ``perf_scaling.png``.

This file is the entry point; the phases live in the package ``benchmarks/perf/``: ``common`` (constants,
schema, measured child processes), ``prepare`` (untimed preparation), ``workers`` (the measured workflows),
``ablation`` (what each technique buys), ``run`` (orchestration, the command line) and ``report`` (perf.md,
the plot).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, where the perf package lives

# The orchestrating process never imports torch (see perf.run); workers import it with perf.workers.
from perf.common import SCHEMA, anchor_selection  # noqa: E402, F401  (re-exported for tests and readers)
from perf.run import build_parser, main, parse  # noqa: E402, F401

if __name__ == "__main__":
    args = parse()
    if args.worker:
        from perf.workers import work

        if args.worker != "prepare" and args.jpeg_root is None:
            from tlhelpers.settings import cifar_dir

            args.jpeg_root = cifar_dir()
        print(json.dumps(work(args), default=float), flush=True)
        os._exit(0)  # skip interpreter teardown: with this torch build it alone raises peak RSS by ~100 MB
    else:
        main(args)
