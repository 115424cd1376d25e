"""Notebook maintenance for the course: one output policy, badges, measured budgets.

Policy: notebooks are committed without outputs, except code cells whose source contains
``# NBVAL_CHECK_OUTPUT``; nbval compares those outputs (tests/test_notebook_policy.py enforces it).

    python tools/nbtool.py refresh [NB ...]   execute in quick mode, keep only the checked cells' outputs
    python tools/nbtool.py strip   [NB ...]   drop every output except the checked cells' (no execution)
    python tools/nbtool.py header  [NB ...]   (re)write the Binder/Colab badges in the first cell
    python tools/nbtool.py measure [--weights course|imagenet|lite0] [NB ...]
                                              run in full mode with those weights (default: course; lite0
                                              for the notebooks that load ImageNet Lite0 by name), record
                                              wall time and peak RAM of the kernel in docs/notebook_budgets.json
                                              and in each notebook's header; the executed notebooks
                                              are kept in _executed/ (git-ignored) to read
    python tools/nbtool.py budgets [NB ...]   rewrite the header budget lines from docs/notebook_budgets.json
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import nbformat
import tomllib

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
CHECK = "NBVAL_CHECK_OUTPUT"
EXECUTED = ROOT / "_executed"  # full-mode notebooks as `measure` ran them (git-ignored)
BUDGET_RE = re.compile(r"<!-- budget -->.*?<!-- /budget -->", re.S)


def repo_slug() -> str:
    """owner/name of the course on GitHub, from pyproject's [project.urls] Repository."""
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    return url.removeprefix("https://github.com/").strip("/")


def site_url(nb_name: str | None = None) -> str:
    """The published website (GitHub Pages of the repository), or one notebook's page on it."""
    owner, name = repo_slug().split("/")
    base = f"https://{owner}.github.io/{name}/"
    return base + (f"notebooks/{Path(nb_name).stem}.html" if nb_name else "")


def badges(nb_name: str) -> str:
    slug = repo_slug()
    return (
        f"[![Open in Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/{slug}/main?urlpath=lab/tree/notebooks/{nb_name}) "  # noqa: E501
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{slug}/blob/main/notebooks/{nb_name}) "  # noqa: E501
        f"· [read it with its outputs on the course website]({site_url(nb_name)})"
    )


def notebooks(args: list[str]) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    return sorted(p for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and CHECK in cell.source


def clean(nb) -> None:
    """Apply the output policy in place."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if not is_checked(cell):
            cell.outputs = []
        else:  # keep only what nbval compares; drop volatile fields
            cell.outputs = [
                o for o in cell.outputs if o.get("output_type") != "display_data" or "text/plain" in o.get("data", {})
            ]
            for o in cell.outputs:
                o.pop("execution_count", None) if o.get("output_type") != "execute_result" else None
                o.get("metadata", {}).clear() if isinstance(o.get("metadata"), dict) else None
        # nbval skips ("Unrun reference cell has outputs") a reference cell without an execution count,
        # so checked cells keep a constant one; every other cell has none
        cell.execution_count = 1 if is_checked(cell) and cell.outputs else None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("scrolled", None)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(path: Path, quick: bool, timeout: int = 900) -> tuple[object, float, float]:
    """Run a notebook; return (notebook, seconds, peak memory in GB: summed PSS of the kernel and its children)."""
    import psutil
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_quick = os.environ.get("TLHELPERS_QUICK")
    os.environ["TLHELPERS_QUICK"] = "1" if quick else "0"
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                pid = client.km.provisioner.process.pid if client.km and client.km.provisioner else None
                if pid:
                    p = psutil.Process(pid)
                    # PSS, not RSS: forked DataLoader workers share the kernel's pages, and summing their RSS
                    # would count those pages twice (a cgroup limit such as Binder's counts them once)
                    rss = sum(q.memory_full_info().pss for q in [p, *p.children(recursive=True)])
                    peak[0] = max(peak[0], rss)
            except Exception:
                pass
            time.sleep(0.2)

    t0 = time.perf_counter()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        client.execute()
    finally:
        stop.set()
        th.join()
        if env_quick is None:
            os.environ.pop("TLHELPERS_QUICK", None)
        else:
            os.environ["TLHELPERS_QUICK"] = env_quick
    return nb, time.perf_counter() - t0, peak[0] / 1e9


def cmd_refresh(paths):
    for p in paths:
        nb, sec, gb = execute(p, quick=True)
        clean(nb)
        nbformat.write(nb, p)
        print(f"{p.name}: refreshed in {sec:.0f}s (quick mode), peak RAM {gb:.2f} GB")


def cmd_strip(paths):
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        clean(nb)
        nbformat.write(nb, p)
        print(f"{p.name}: stripped")


def cmd_header(paths):
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        first = nb.cells[0]
        lines = [ln for ln in first.source.splitlines() if "mybinder.org/badge" not in ln and "colab-badge" not in ln]
        title_at = next((i for i, ln in enumerate(lines) if ln.startswith("# ")), 0)
        lines.insert(title_at + 1, "")
        lines.insert(title_at + 2, badges(p.name))
        first.source = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
        nbformat.write(nb, p)
        print(f"{p.name}: badges written")


WEIGHTS_LABEL = {
    "course": "the course backbone (64 px)",
    "imagenet": "ImageNet weights (224 px)",
    "lite0": "ImageNet EfficientNet-Lite0 (128 px)",
}


def genuine_imagenet_file() -> bool:
    """True if the cached ResNet18 ImageNet file is torchvision's own (its sha256 starts with the name's hash)."""
    from tlhelpers.models import imagenet_weights_path
    from tlhelpers.settings import hub_file_ok

    return hub_file_ok(imagenet_weights_path("resnet18"))


def budget_line(entries: dict) -> str:
    """The header line from the measurements of one notebook, the course backbone first."""
    cpu = next(iter(entries.values()))["cpus"]
    parts = [
        f"about {max(1, round(e['seconds_full_mode'] / 60))} min, **peak RAM** {e['peak_ram_gb']:.1f} GB with "
        f"{WEIGHTS_LABEL[w]}"
        for w, e in sorted(entries.items(), key=lambda kv: kv[0] != "course")
    ]
    return (
        f"<!-- budget -->**Runtime** (full mode, measured on a {cpu}-core CPU, no GPU): "
        + "; ".join(parts)
        + ".<!-- /budget -->"
    )


def write_budget(p: Path, entries: dict) -> None:
    """Put the budget line of ``entries`` into notebook ``p``'s header cell."""
    nb = nbformat.read(p, as_version=4)
    for cell in nb.cells[:3]:
        if cell.cell_type == "markdown" and BUDGET_RE.search(cell.source):
            cell.source = BUDGET_RE.sub(lambda m: budget_line(entries), cell.source)
            break
    else:
        print(f"{p.name}: no <!-- budget --> marker in the first cells", file=sys.stderr)
    nbformat.write(nb, p)


def cmd_budgets(paths):
    """Rewrite the budget lines from docs/notebook_budgets.json (no execution)."""
    data = json.loads((ROOT / "docs" / "notebook_budgets.json").read_text())
    for p in paths:
        if p.name in data:
            write_budget(p, data[p.name])
            print(f"{p.name}: {budget_line(data[p.name])}")


def loads_lite0(p: Path) -> bool:
    """True if notebook ``p`` runs on ImageNet Lite0, loaded by name ($TLHELPERS_WEIGHTS does not apply to it),
    and on no ResNet18 (whose weights that variable picks)."""
    text = p.read_text().replace('\\"', '"')
    return 'load_backbone("efficientnet_lite0"' in text and 'load_backbone("resnet18"' not in text


def cmd_measure(paths, weights: str = "course"):
    """Run each notebook in full mode with TLHELPERS_WEIGHTS=weights (a notebook that loads Lite0 by name:
    recorded as lite0, whatever was asked); record time and peak RAM."""
    out = ROOT / "docs" / "notebook_budgets.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    old = os.environ.get("TLHELPERS_WEIGHTS")
    if weights != "lite0":
        os.environ["TLHELPERS_WEIGHTS"] = weights
    try:
        for p in paths:
            w = "lite0" if loads_lite0(p) else weights
            if w != weights:
                print(f"{p.name} loads ImageNet Lite0 by name: measured and recorded as lite0")
            nb, sec, gb = execute(p, quick=False)
            EXECUTED.mkdir(exist_ok=True)
            nbformat.write(nb, EXECUTED / p.name)  # to read the full-mode outputs against the prose
            if w == "lite0":  # such a notebook has one version: older backbones' figures are stale
                data[p.name] = {}
            data.setdefault(p.name, {})[w] = {
                "seconds_full_mode": round(sec, 1),
                "peak_ram_gb": round(gb, 2),
                "cpus": os.cpu_count(),
                "measured": time.strftime("%Y-%m-%d"),
            }
            if w == "imagenet" and not genuine_imagenet_file():
                data[p.name][w]["note"] = (
                    "timed with a stand-in weights file of the same shapes (no network "
                    "here): the runtime and memory are real, the accuracies were not"
                )
            write_budget(p, data[p.name])
            print(f"{p.name} ({w}): {sec:.0f}s, peak RAM {gb:.2f} GB")
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    finally:
        if old is None:
            os.environ.pop("TLHELPERS_WEIGHTS", None)
        else:
            os.environ["TLHELPERS_WEIGHTS"] = old


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("refresh", "strip", "header", "measure", "budgets"):
        print(__doc__)
        sys.exit(2)
    args = sys.argv[2:]
    if any(a.startswith("-") and a != "--weights" for a in args):
        print(__doc__)
        sys.exit(0 if {"-h", "--help"} & set(args) else 2)
    if sys.argv[1] == "measure" and args[:1] == ["--weights"]:
        cmd_measure(notebooks(args[2:]), weights=args[1])
    else:
        {
            "refresh": cmd_refresh,
            "strip": cmd_strip,
            "header": cmd_header,
            "measure": cmd_measure,
            "budgets": cmd_budgets,
        }[sys.argv[1]](notebooks(args))
