"""ipywidgets views: the fine-tuning simulator and the strategy guide. Thin layers over tested functions.

CSS classes for end-to-end browser tests (kept stable): ``tl-toggle-<stage>`` (one per stage),
``tl-train-step``, ``tl-status`` (with ``tl-trainable`` and, after a step, ``tl-flow`` inside),
``tl-plot``; ``tl-size``, ``tl-similarity``, ``tl-budget``, ``tl-recommendation`` (with ``tl-strategy``
inside), ``tl-flowchart``.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from .freeze import count_params, stage_names, stage_params, trainable_stages
from .recipe import STRATEGY_COLORS
from .simulator import StepReport, train_step
from .strategy import recommend_strategy
from .viz import draw_flowchart, draw_step

__all__ = ["FineTuningSimulator", "StrategyGuide"]


def _show_figure(out, fig, text: str) -> None:
    """Put a matplotlib figure into an ``Output`` widget as a PNG, replacing what was there.

    Setting ``outputs`` directly works from button callbacks, in any frontend, and without a kernel (tests).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    out.outputs = (
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": text},
        },
    )


class FineTuningSimulator:
    """One toggle per stage (Frozen, blue / Trainable, green) and a "Train step" button that runs
    :func:`tlhelpers.simulator.train_step` on a real batch and shows where gradients flowed.

    The toggles start from the model's current ``requires_grad`` state. Each step really trains
    ``model`` (one SGD step at ``lr``); use a copy if you need the original weights afterwards.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform=None, lr: float = 1e-2):
        import ipywidgets as w

        self.model, self.images, self.labels, self.transform, self.lr = model, images, labels, transform, lr
        self.stages = stage_names(model)
        on = set(trainable_stages(model))
        self.toggles: dict[str, w.ToggleButton] = {}
        for s in self.stages:
            t = w.ToggleButton(value=s in on, layout=w.Layout(width="150px"), tooltip=f"Freeze or train {s}")
            t.add_class(f"tl-toggle-{s}")
            self._style(s, t)
            t.observe(self._on_toggle, names="value")
            self.toggles[s] = t
        self.button = w.Button(
            description="Train step",
            button_style="danger",
            icon="play",
            tooltip="Run one real forward/backward/SGD step on the batch",
        )
        self.button.add_class("tl-train-step")
        self.button.on_click(lambda _: self.step())
        self.status = w.HTML()
        self.status.add_class("tl-status")
        self.plot = w.Output()
        self.plot.add_class("tl-plot")
        self.report: StepReport | None = None
        self.widget = w.VBox([w.HBox(list(self.toggles.values())), w.HBox([self.button, self.status]), self.plot])
        self._update_status()

    @staticmethod
    def _style(stage: str, t) -> None:
        # ToggleButton has no free button colour in ipywidgets 8: "primary" is blue, "success" green
        t.description = f"{stage}: {'Trainable' if t.value else 'Frozen'}"
        t.button_style = "success" if t.value else "primary"
        t.icon = "unlock" if t.value else "lock"

    def _on_toggle(self, change) -> None:
        t = change["owner"]
        self._style(next(s for s, b in self.toggles.items() if b is t), t)
        self._update_status()

    def selected(self) -> list[str]:
        """The stages currently toggled to Trainable."""
        return [s for s, t in self.toggles.items() if t.value]

    def _update_status(self, running: bool = False) -> None:
        total = count_params(self.model)[1]
        chosen = sum(p.numel() for s in self.selected() for p in stage_params(self.model, s))
        text = f"Trainable: <b class='tl-trainable'>{chosen:,}</b> / {total:,} ({chosen / total:.2%})"
        if running:
            text += " &nbsp;|&nbsp; running one step..."
        elif self.report is None:
            text += " &nbsp;|&nbsp; press <i>Train step</i> to run one real step"
        else:
            r = self.report
            flowing = [s for s in r.stages if r.receives_gradient(s)]
            changed = ", ".join(f"{s} {r.changed[s]}/{r.n_tensors[s]}" for s in r.stages if r.changed[s]) or "none"
            text += (
                f"<br>Last step: gradients reached the weights of <b class='tl-flow'>"
                f"{html.escape(', '.join(flowing) or 'none')}</b>; tensors changed: {html.escape(changed)}; "
                f"loss {r.loss:.3f}; step time {r.seconds * 1000:.0f} ms"
            )
            if sorted(r.stages.index(s) for s in self.selected()) != [
                i for i, s in enumerate(r.stages) if r.trainable[s]
            ]:
                text += " <i>(toggles changed since: press Train step again)</i>"
        self.status.value = text

    def step(self) -> StepReport:
        """Run one real training step with the current toggles and redraw."""
        self.button.disabled = True
        self._update_status(running=True)
        try:
            self.report = train_step(
                self.model, self.images, self.labels, self.selected(), lr=self.lr, transform=self.transform
            )
        finally:
            self.button.disabled = False
        _show_figure(
            self.plot,
            draw_step(self.report),
            f"<gradient-flow plot: {', '.join(self.selected()) or 'nothing'} trainable>",
        )
        self._update_status()
        return self.report

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class StrategyGuide:
    """Controls for dataset size, domain similarity and compute budget; shows :func:`recommend_strategy`
    with its reason, and the flowchart with the path taken drawn bold (``flowchart=False`` to leave it out)."""

    SIZES = [50, 100, 300, 500, 1_000, 3_000, 5_000, 10_000, 30_000, 100_000, 1_000_000]

    def __init__(self, n_images: int = 500, similarity: str = "similar", budget: str = "ample", flowchart: bool = True):
        import ipywidgets as w

        if n_images not in self.SIZES:
            raise ValueError(f"n_images must be one of {', '.join(f'{n:,}' for n in self.SIZES)}; got {n_images!r}")
        recommend_strategy(n_images, similarity, budget)  # validates similarity and budget with clear messages
        style = {"description_width": "110px"}
        self.size = w.SelectionSlider(
            options=[(f"{n:,}", n) for n in self.SIZES],
            value=n_images,
            description="Labelled images",
            continuous_update=False,
            style=style,
            layout=w.Layout(width="480px"),
        )
        self.size.add_class("tl-size")
        self.similarity = w.ToggleButtons(
            options=["similar", "different"],
            value=similarity,
            description="Domain",
            tooltips=["similar to the pretraining images", "different from them"],
            style=style,
        )
        self.similarity.add_class("tl-similarity")
        self.budget = w.ToggleButtons(
            options=["limited", "ample"], value=budget, description="Compute budget", style=style
        )
        self.budget.add_class("tl-budget")
        self.out = w.HTML()
        self.out.add_class("tl-recommendation")
        for c in (self.size, self.similarity, self.budget):
            c.observe(lambda _: self.update(), names="value")
        self.chart = w.Output() if flowchart else None
        if self.chart is not None:
            self.chart.add_class("tl-flowchart")
        self.widget = w.VBox([self.size, self.similarity, self.budget, self.out] + ([self.chart] if flowchart else []))
        self.update()

    def update(self):
        """Recompute the recommendation from the controls and redraw it."""
        r = recommend_strategy(self.size.value, self.similarity.value, self.budget.value)
        self.recommendation = r
        color = STRATEGY_COLORS[r.strategy]
        self.out.value = (
            f"<div style='border-left:5px solid {color};padding:4px 10px;margin-top:6px'>"
            f"<b class='tl-strategy' style='font-size:1.15em'>{html.escape(r.strategy)}</b> &mdash; "
            f"{html.escape(r.scenario)}<br>"
            f"<span style='color:#555'>path: {html.escape(r.path)}</span><br>"
            f"train: {html.escape(', '.join(r.trainable))}; learning rates: {html.escape(r.learning_rates)}<br>"
            f"<i>why: {html.escape(r.reason)}</i></div>"
        )
        if self.chart is not None:
            _show_figure(self.chart, draw_flowchart(r), f"<flowchart: {r.path}>")
        return r

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
