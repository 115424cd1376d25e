"""The notebooks' output policy: no committed outputs except cells marked NBVAL_CHECK_OUTPUT."""

import json
import re
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 7, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_only_on_checked_cells(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        if "NBVAL_CHECK_OUTPUT" in src:
            assert cell["outputs"], f"{path.name} cell {i} is marked NBVAL_CHECK_OUTPUT but has no committed output"
            assert not any(o.get("name") == "stderr" for o in cell["outputs"]), (
                f"{path.name} cell {i}: stderr in a checked cell"
            )
            assert cell.get("execution_count") is not None, (
                f"{path.name} cell {i}: nbval needs an execution count on a checked cell"
            )
        else:
            assert not cell["outputs"], (
                f"{path.name} cell {i} has committed outputs but is not marked NBVAL_CHECK_OUTPUT"
            )
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_structure(path):
    """Learning goals, a measured budget, exercises with self-checks, a summary."""
    nb = json.loads(path.read_text())
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "learning goals" in md.lower() or "you will learn" in md.lower(), "no learning goals"
    budget = re.search(r"<!-- budget -->(.*?)<!-- /budget -->", md)
    assert budget, "no runtime/RAM line"
    assert re.search(r"\*\*Runtime\*\*.*\d.*\*\*peak RAM\*\* [\d.]+ GB", budget.group(1)), (
        f"the runtime/RAM line is not a measurement: {budget.group(1)!r} (run tools/nbtool.py measure)"
    )
    assert "summary" in md.lower(), "no summary"
    assert len(re.findall(r"^#+ Exercise \d", md, flags=re.M)) >= 2, "fewer than 2 exercises"
    assert len(re.findall(r"\bcheck_\w+\(", code)) >= 2, "fewer than 2 self-check calls"


SELECTS_ON = re.compile(
    r"tl\.fit\(\s*[\w.]+\s*,\s*[\w.]+\s*,\s*([\w.]+)|val_loader\s*=\s*([\w.]+)"
    r"|tl\.fit_head\((?:[^()]|\([^()]*\))*?,\s*([\w.]*test[\w.]*)\s*,"
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_training_selects_on_validation_not_test(path):
    """Select on a validation split, touch the test set once: no fit may validate on test data."""
    nb = json.loads(path.read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    bad = [next(g for g in m.groups() if g) for m in SELECTS_ON.finditer(src)]
    assert not [b for b in bad if "test" in b], f"{path.name}: fit validates on {bad}"


def test_the_validation_check_catches_test_data():
    assert SELECTS_ON.search("tl.fit(model, train_loader, test_loader, epochs=2)").group(1) == "test_loader"
    assert SELECTS_ON.search("tl.fit_head(f, y, 2, test_feats, test_y)").group(3) == "test_feats"
    assert SELECTS_ON.search("tl.fit_head(f, y, 2, val_feats, val_y)") is None


SELECTION_CALL = re.compile(r"\b(compare|choose|check_\w*choice)\s*\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)")


def selections_on_test(src: str) -> list[str]:
    """The selection calls (``compare``, ``choose``, ``check_*choice``) in ``src`` that choose on test data:
    a split named test (``on="test"``), or an argument whose name says it holds test data (``test_correct``)."""
    bad = []
    for m in SELECTION_CALL.finditer(src):
        args = m.group(2)
        on = re.search(r"\bon\s*=\s*(['\"])(.*?)\1", args)
        if on and "test" in re.split(r"[^a-z0-9]+", on.group(2).lower()):
            bad.append(m.group(0))
            continue
        data = re.sub(r"\b(on|names|label)\s*=\s*(['\"]).*?\2", "", args)  # names and labels are not data
        data = re.sub(r"(['\"]).*?\1", "", data)  # nor are other strings
        if any("test" in re.split(r"[^a-z0-9]+", w.lower()) for w in re.findall(r"[A-Za-z_][\w.]*", data)):
            bad.append(m.group(0))
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_choice_is_made_on_test_data(path):
    """Every choice (stage, k, learning rate, strategy) is made on validation data: no compare/choose/check_*choice
    call names the test split or passes test data."""
    nb = json.loads(path.read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert not selections_on_test(src), f"{path.name} chooses on test data: {selections_on_test(src)}"


def test_the_selection_check_catches_test_data():
    crafted = json.dumps(
        {
            "cells": [
                {"cell_type": "code", "source": ['choice = tl.stats.choose(correct, on="test")\n']},
                {"cell_type": "code", "source": ["v = tl.stats.compare(test_right[a], test_right[b], on='val')"]},
                {"cell_type": "code", "source": ["check_k_choice(K, {k: f(k, test_y) for k in KS})"]},
                {"cell_type": "code", "source": ['ok = tl.stats.compare(a, b, on="validation", names=("test", "x"))']},
                {"cell_type": "code", "source": ['tl.stats.choose(val_correct, on="validation", label=str)']},
            ]
        }
    )
    nb = json.loads(crafted)
    found = [selections_on_test("".join(c["source"])) for c in nb["cells"]]
    assert [bool(f) for f in found] == [True, True, True, False, False], found


FIGSIZE = re.compile(r"figsize=\(\s*([0-9.]+)\s*,")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_fit_the_website_column(path):
    """A figure wider than tl.viz.COLUMN_WIDTH is shrunk on the website, and its labels with it."""
    from tlhelpers.viz import COLUMN_WIDTH

    nb = json.loads(path.read_text())
    src = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    wide = [w for w in FIGSIZE.findall(src) if float(w) > COLUMN_WIDTH]
    assert not wide, f"{path.name}: figsize widths {wide} in; use at most tl.viz.COLUMN_WIDTH ({COLUMN_WIDTH})"


ROOT = NB_DIR.parent
LINKED = sorted([*NOTEBOOKS, *ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("benchmarks/results/*.md")])


@pytest.mark.parametrize("path", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_lead_to_files(path):
    """A relative Markdown link resolves from the file's own folder (GitHub, Jupyter and the website agree)."""
    text = path.read_text()
    if path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
    targets = [m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text)]
    missing = [t for t in targets if t and not re.match(r"[a-z]+:", t) and not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)}: links to files that do not exist: {missing}"
