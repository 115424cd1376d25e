"""ipywidgets views: the fine-tuning simulator and the strategy guide. Thin layers over tested functions."""
from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from .freeze import count_params, stage_names, trainable_stages
from .simulator import StepReport, train_step
from .strategy import recommend_strategy

__all__ = ["FineTuningSimulator", "StrategyGuide"]

BLUE, GREEN, RED = "#1f77b4", "#2ca02c", "#d62728"


class FineTuningSimulator:
    """One toggle per stage (Frozen, blue / Trainable, green) and a "Train step" button that runs
    :func:`tlhelpers.simulator.train_step` on a real batch and shows where gradients flowed."""

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform=None, lr: float = 1e-2):
        import ipywidgets as w

        self.model, self.images, self.labels, self.transform, self.lr = model, images, labels, transform, lr
        self.stages = stage_names(model)
        on = set(trainable_stages(model))
        self.toggles = {}
        for s in self.stages:
            t = w.ToggleButton(value=s in on, description=self._label(s, s in on), layout=w.Layout(width="130px"))
            t.add_class(f"tl-toggle-{s}")
            t.observe(self._on_toggle, names="value")
            self._style(t)
            self.toggles[s] = t
        self.button = w.Button(description="Train step", button_style="danger", icon="play")
        self.button.add_class("tl-train-step")
        self.button.on_click(lambda _: self.step())
        self.status = w.HTML()
        self.status.add_class("tl-status")
        self.plot = w.Output()
        self.report: StepReport | None = None
        self.widget = w.VBox([w.HBox(list(self.toggles.values())), w.HBox([self.button, self.status]), self.plot])
        self._update_status()

    @staticmethod
    def _label(stage: str, on: bool) -> str:
        return f"{stage}: {'Trainable' if on else 'Frozen'}"

    def _style(self, t) -> None:
        t.style.button_color = GREEN if t.value else BLUE
        t.style.text_color = "white"

    def _on_toggle(self, change) -> None:
        t = change["owner"]
        stage = next(s for s, b in self.toggles.items() if b is t)
        t.description = self._label(stage, t.value)
        self._style(t)
        self._update_status()

    def selected(self) -> list[str]:
        return [s for s, t in self.toggles.items() if t.value]

    def _update_status(self) -> None:
        from .freeze import _params

        total = count_params(self.model)[1]
        chosen = sum(p.numel() for s in self.selected() for p in _params(self.model, s))
        text = f"Trainable: <b class='tl-trainable'>{chosen:,}</b> / {total:,} ({chosen / total:.2%})"
        if self.report is not None:
            r = self.report
            flowing = [s for s in r.stages if r.receives_gradient(s)]
            text += (f" &nbsp;|&nbsp; last step: loss {r.loss:.3f}, {r.seconds * 1000:.0f} ms, "
                     f"gradients reached: <b class='tl-flow'>{html.escape(', '.join(flowing) or 'none')}</b>")
        self.status.value = text

    def step(self) -> StepReport:
        """Run one real training step with the current toggles and redraw."""
        self.report = train_step(self.model, self.images, self.labels, self.selected(), lr=self.lr, transform=self.transform)
        self._update_status()
        self.plot.clear_output(wait=True)
        with self.plot:
            self._draw(self.report)
            plt.show()
        return self.report

    def _draw(self, r: StepReport):
        fig, ax = plt.subplots(figsize=(9, 3))
        xs = range(len(r.stages))
        colors = [GREEN if r.trainable[s] else BLUE for s in r.stages]
        ax.bar(xs, [1] * len(xs), color=colors, alpha=0.25, width=0.8)
        for i, s in enumerate(r.stages):
            g = r.grad_norm[s]
            if g > 0:
                ax.scatter([i], [0.5], s=120 + 600 * min(1.0, g / max(r.grad_norm.values())), color=RED, zorder=3)
            label = (f"grad {g:.2g}\n{r.changed[s]}/{r.n_tensors[s]} changed" if g > 0
                     else ("signal passes,\nno weight grad" if r.signal_norm[s] > 0 else "no gradient"))
            ax.text(i, 0.12, label, ha="center", fontsize=8)
        ax.set_xticks(list(xs), [f"{s}\n{'trainable' if r.trainable[s] else 'frozen'}" for s in r.stages])
        ax.set_yticks([])
        ax.set_ylim(0, 1)
        ax.set_title(f"Gradient flow (red = gradients reach the weights); input on the left, loss on the right. "
                     f"Step {r.seconds * 1000:.0f} ms", fontsize=9)
        fig.tight_layout()
        return fig

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


class StrategyGuide:
    """Controls for dataset size, domain similarity and compute budget; shows :func:`recommend_strategy`."""

    SIZES = [50, 100, 300, 500, 1_000, 3_000, 5_000, 10_000, 30_000, 100_000, 1_000_000]

    def __init__(self, n_images: int = 500, similarity: str = "similar", budget: str = "ample"):
        import ipywidgets as w

        self.size = w.SelectionSlider(options=[(f"{n:,}", n) for n in self.SIZES], value=n_images,
                                      description="Images", continuous_update=False, layout=w.Layout(width="420px"))
        self.size.add_class("tl-size")
        self.similarity = w.ToggleButtons(options=["similar", "different"], value=similarity, description="Domain")
        self.similarity.add_class("tl-similarity")
        self.budget = w.ToggleButtons(options=["limited", "ample"], value=budget, description="Compute")
        self.budget.add_class("tl-budget")
        self.out = w.HTML()
        self.out.add_class("tl-recommendation")
        for c in (self.size, self.similarity, self.budget):
            c.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([self.size, self.similarity, self.budget, self.out])
        self.update()

    def update(self):
        r = recommend_strategy(self.size.value, self.similarity.value, self.budget.value)
        self.recommendation = r
        self.out.value = (f"<div style='border-left:4px solid {GREEN};padding:4px 10px'>"
                          f"<b class='tl-strategy'>{html.escape(r.strategy)}</b> &mdash; {html.escape(r.scenario)}<br>"
                          f"train: {html.escape(', '.join(r.trainable))}; learning rates: {html.escape(r.learning_rates)}<br>"
                          f"<i>{html.escape(r.reason)}</i></div>")
        return r

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)
