"""The course's two widgets, used as a learner uses them: JupyterLab 4 in headless Chromium.

Notebook 03: run all cells, switch a frozen stage to Trainable, press "Train step", and read from
the page that the trainable count rose and that gradients now reach that stage.
Notebook 06: run the cells down to the strategy guide, move its controls, and read from the page
that the recommendation changed to what :func:`tlhelpers.recommend_strategy` says for them.
Screenshots go to ``test-artifacts/e2e/``. See ``conftest.py`` for the server and the browser.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tlhelpers.strategy import recommend_strategy
from tlhelpers.widgets import StrategyGuide

pytestmark = pytest.mark.e2e

SIMULATOR_NB = "03_finetuning_simulator.ipynb"
GUIDE_NB = "06_choosing_a_strategy.ipynb"
RUN_TIMEOUT_MS = 600_000  # executing a notebook's cells in quick mode (about a minute; generous for a busy CI)
STEP_TIMEOUT_MS = 120_000  # one widget round trip to the kernel (one real training step at most)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
TRACEBACK = "Traceback (most recent call last)"


# ------------------------------------------------------------------ JupyterLab, as a learner drives it
def open_notebook(page, lab, name: str) -> None:
    """Open ``notebooks/name`` in a reset workspace and wait until its kernel is idle."""
    if not (lab.root / "notebooks" / name).is_file():
        pytest.fail(f"notebooks/{name} is missing: the e2e test needs it")
    page.goto(lab.url(f"lab/tree/notebooks/{name}", "reset"))
    deadline = time.monotonic() + 120
    while not any(
        s["path"].endswith(name) and s["kernel"]["connections"] > 0 and s["kernel"]["execution_state"] == "idle"
        for s in lab.api("sessions")
    ):
        assert time.monotonic() < deadline, f"no idle kernel connected to {name} after 120 s: {lab.api('sessions')}"
        time.sleep(0.5)
    page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    n_cells = len(_nb_cells(lab.root / "notebooks" / name))
    shown = page.locator(f"{PANEL} .jp-Cell").count()
    assert shown == n_cells, f"{shown} of {n_cells} cells in the page: is notebook windowing still on?"


def _nb_cells(path: Path) -> list[dict]:
    import json

    return json.loads(path.read_text())["cells"]


def menu(page, top: str, item: str) -> None:
    """Click ``top > item`` in JupyterLab's menu bar."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(rf"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


def wait_cells_done(page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until no code cell is queued or running ([*]) and the kernel is idle; fail on a traceback."""
    page.wait_for_function(
        """(panel) => {
             const dialog = document.querySelector('.jp-Dialog');
             if (dialog) throw new Error('unexpected dialog: ' + dialog.innerText);
             const p = document.querySelector(panel);
             if (!p) return false;
             const prompts = [...p.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
             const idle = p.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
             return idle && prompts.some(t => /\\[\\d+\\]/.test(t)) && !prompts.some(t => t.includes('*'));
           }""",
        arg=PANEL,
        timeout=timeout_ms,
        polling=500,
    )
    outputs = page.locator(f"{PANEL} .jp-OutputArea-output").all_inner_texts()
    errors = [t for t in outputs if TRACEBACK in t]
    assert not errors, "a cell raised an error in JupyterLab:\n" + errors[0][-2000:]
    broken = page.locator(
        f"{PANEL} .jp-OutputArea-output", has_text=re.compile("Error displaying widget|Loading widget")
    )
    assert broken.count() == 0, f"a widget did not render: {broken.first.inner_text()[:300]}"


def code_cells_not_run(page) -> int:
    """Non-empty code cells without an execution count ([ ])."""
    return page.evaluate(
        """(panel) => [...document.querySelectorAll(panel + ' .jp-CodeCell')].filter(c =>
             c.querySelector('.jp-InputArea-editor').textContent.trim() &&
             !/\\[\\d+\\]/.test(c.querySelector('.jp-InputPrompt').textContent)).length""",
        PANEL,
    )


def bold_int(root, cls: str) -> int:
    return int(root.locator(cls).inner_text().replace(",", ""))


# ------------------------------------------------------------------ the simulator
def press_train_step(page, sim) -> list[str]:
    """Press "Train step", wait for the new plot, return the stages the page says gradients reached."""
    page.evaluate(
        "(el) => el.querySelectorAll('.tl-plot img').forEach(i => i.dataset.e2eOld = '1')", sim.element_handle()
    )
    sim.locator(".tl-train-step").click()
    # The widget shows "running one step..." (no tl-flow), then the new plot, then the status with tl-flow.
    sim.locator(".tl-plot img:not([data-e2e-old])").first.wait_for(timeout=STEP_TIMEOUT_MS)
    sim.locator(".tl-status .tl-flow").wait_for(timeout=STEP_TIMEOUT_MS)
    flow = sim.locator(".tl-flow").inner_text().strip()
    return [] if flow == "none" else [s.strip() for s in flow.split(",")]


def test_simulator_train_step_in_browser(page, lab, artifacts):
    t0 = time.monotonic()
    open_notebook(page, lab, SIMULATOR_NB)
    menu(page, "Run", "Run All Cells")
    wait_cells_done(page)
    assert code_cells_not_run(page) == 0, "Run All Cells left code cells unexecuted"
    t_run = time.monotonic() - t0

    sim = page.locator(f"{PANEL} .jp-OutputArea-output").filter(has=page.locator(".tl-train-step")).first
    sim.scroll_into_view_if_needed()
    toggles = {
        m.group(1): sim.locator(f".tl-toggle-{m.group(1)}")
        for m in (
            re.search(r"tl-toggle-(\w+)", c)
            for c in sim.locator("[class*='tl-toggle-']").evaluate_all("els => els.map(e => e.className)")
        )
        if m
    }
    assert {"stem", "layer1", "layer2", "layer3", "layer4", "fc"} <= set(toggles), (
        f"stage toggles found: {sorted(toggles)}"
    )
    frozen = [s for s in ("layer4", "layer3", "layer2", "layer1", "stem") if "Frozen" in toggles[s].inner_text()]
    if not frozen:  # everything trainable: freeze layer4 first, as a learner would
        toggles["layer4"].click()
        toggles["layer4"].filter(has_text="Frozen").wait_for(timeout=STEP_TIMEOUT_MS)
        frozen = ["layer4"]
    stage = frozen[0]
    sim.screenshot(path=str(artifacts / "03_simulator_before.png"))

    before_count = bold_int(sim, ".tl-trainable")
    flow_before = press_train_step(page, sim)
    assert stage not in flow_before, f"{stage} is Frozen but the page says gradients reached it: {flow_before}"

    toggles[stage].click()
    toggles[stage].filter(has_text="Trainable").wait_for(timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        "([el, n]) => parseInt(el.textContent.replace(/,/g, '')) > n",
        arg=[sim.locator(".tl-trainable").element_handle(), before_count],
        timeout=STEP_TIMEOUT_MS,
    )
    after_count = bold_int(sim, ".tl-trainable")
    flow_after = press_train_step(page, sim)
    sim.screenshot(path=str(artifacts / "03_simulator_after_step.png"))
    page.screenshot(path=str(artifacts / "03_simulator_page.png"))

    assert after_count > before_count, f"trainable count did not rise: {before_count:,} -> {after_count:,}"
    assert stage in flow_after, f"{stage} set to Trainable, but gradients reached only {flow_after}"
    print(
        f"simulator: {stage} Trainable; trainable {before_count:,} -> {after_count:,}; gradients reached "
        f"{flow_before} -> {flow_after}; run-all {t_run:.0f} s, total {time.monotonic() - t0:.0f} s"
    )


# ------------------------------------------------------------------ the strategy guide
def guide_state(guide) -> tuple[int, str, str]:
    """(images, similarity, budget) as the controls show them."""
    size = int(guide.locator(".tl-size .widget-readout").inner_text().replace(",", ""))
    sim = guide.locator(".tl-similarity button.mod-active").inner_text().strip()
    budget = guide.locator(".tl-budget button.mod-active").inner_text().strip()
    return size, sim, budget


def run_down_to(page, lab, name: str, marker: str) -> None:
    """Select the first code cell whose source contains ``marker``; run every cell above it, then it."""
    sources = ["".join(c["source"]) for c in _nb_cells(lab.root / "notebooks" / name)]
    hits = [i for i, s in enumerate(sources) if marker in s]
    assert hits, f"no cell of {name} contains {marker!r}"
    cell = page.locator(f"{PANEL} .jp-Cell").nth(hits[0])
    cell.locator(".jp-InputPrompt").click()
    menu(page, "Run", "Run All Above Selected Cell")
    wait_cells_done(page)
    cell.locator(".jp-InputPrompt").click()
    menu(page, "Run", "Run Selected Cell and Do not Advance")
    wait_cells_done(page)


def move(page, guide, action, state: tuple[int, str, str]):
    """Do ``action`` on the guide's controls, which should bring them to ``state``; wait until the page shows
    the recommendation and the flowchart for it; return that recommendation."""
    expected = recommend_strategy(*state)
    page.evaluate(
        "(el) => el.querySelectorAll('.tl-flowchart img').forEach(i => i.dataset.e2eOld = '1')", guide.element_handle()
    )
    action()
    # The guide sets the recommendation text, then redraws the flowchart image.
    strategy = page.locator(".tl-strategy", has_text=re.compile(rf"^{re.escape(expected.strategy)}$"))
    guide.locator(".tl-recommendation", has_text=expected.reason).filter(has=strategy).wait_for(timeout=STEP_TIMEOUT_MS)
    if guide.locator(".tl-flowchart").count():
        guide.locator(".tl-flowchart img:not([data-e2e-old])").first.wait_for(timeout=STEP_TIMEOUT_MS)
    assert guide_state(guide) == state, f"controls show {guide_state(guide)}, expected {state}"
    shown = guide.locator(".tl-strategy").inner_text().strip()
    assert shown == expected.strategy, (
        f"page recommends {shown!r} for {state}, recommend_strategy says {expected.strategy!r}"
    )
    return expected


def test_strategy_guide_in_browser(page, lab, artifacts):
    t0 = time.monotonic()
    open_notebook(page, lab, GUIDE_NB)
    run_down_to(page, lab, GUIDE_NB, "StrategyGuide(")
    guide = page.locator(f"{PANEL} .jp-OutputArea-output").filter(has=page.locator(".tl-recommendation")).first
    guide.scroll_into_view_if_needed()

    size, sim, budget = state0 = guide_state(guide)
    first = guide.locator(".tl-strategy").inner_text().strip()
    assert first == recommend_strategy(*state0).strategy, f"page shows {first!r} for {state0}"
    guide.screenshot(path=str(artifacts / "06_guide_before.png"))

    # 1. Drag-free slider move: focus the handle, Home/End, whichever end changes the recommendation.
    ends = {"Home": StrategyGuide.SIZES[0], "End": StrategyGuide.SIZES[-1]}
    key = next((k for k, n in ends.items() if recommend_strategy(n, sim, budget).strategy != first), None)
    assert key is not None, f"no slider end changes the recommendation from {state0}"
    handle = guide.locator(".tl-size .noUi-handle")
    r1 = move(page, guide, lambda: (handle.focus(), page.keyboard.press(key)), (ends[key], sim, budget))
    assert r1.strategy != first
    guide.screenshot(path=str(artifacts / "06_guide_after_slider.png"))

    # 2. A button click: the Domain or Compute option that changes the recommendation again.
    size = ends[key]
    flips = [
        ("tl-similarity", (size, {"similar": "different", "different": "similar"}[sim], budget)),
        ("tl-budget", (size, sim, {"ample": "limited", "limited": "ample"}[budget])),
    ]
    cls, state2 = next(((c, st) for c, st in flips if recommend_strategy(*st).strategy != r1.strategy), flips[0])
    label = state2[1] if cls == "tl-similarity" else state2[2]
    button = guide.locator(f".{cls} button", has_text=re.compile(rf"^{label}$"))
    r2 = move(page, guide, button.click, state2)
    guide.screenshot(path=str(artifacts / "06_guide_after_click.png"))
    page.screenshot(path=str(artifacts / "06_guide_page.png"))
    print(
        f"guide: {state0} {first!r} -> slider {key} {r1.strategy!r} -> {label} {r2.strategy!r}; "
        f"total {time.monotonic() - t0:.0f} s"
    )
