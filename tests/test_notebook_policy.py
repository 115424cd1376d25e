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
            assert not any(o.get("name") == "stderr" for o in cell["outputs"]), f"{path.name} cell {i}: stderr in a checked cell"
            assert cell.get("execution_count") is not None, f"{path.name} cell {i}: nbval needs an execution count on a checked cell"
        else:
            assert not cell["outputs"], f"{path.name} cell {i} has committed outputs but is not marked NBVAL_CHECK_OUTPUT"
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
    assert re.search(r"\*\*Runtime\*\*.*\d.*\*\*peak RAM\*\* [\d.]+ GB", budget.group(1)), \
        f"the runtime/RAM line is not a measurement: {budget.group(1)!r} (run tools/nbtool.py measure)"
    assert "summary" in md.lower(), "no summary"
    assert len(re.findall(r"^#+ Exercise \d", md, flags=re.M)) >= 2, "fewer than 2 exercises"
    assert len(re.findall(r"\bcheck_\w+\(", code)) >= 2, "fewer than 2 self-check calls"
