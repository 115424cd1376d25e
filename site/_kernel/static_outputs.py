"""IPython startup file of the website build only (site/conf.py installs it into a private IPYTHONDIR).

A static page cannot run a kernel, so two things that only live in a kernel get a static form:

* progress bars: ``tqdm.auto`` gives text bars (not widgets) that print their final state, one line on
  stdout, when they close;
* the course's two widgets (:class:`tlhelpers.widgets.FineTuningSimulator`, :class:`StrategyGuide`):
  displayed as what the page can show truthfully, i.e. their state as built, then a scripted interaction
  on a copy, rendered by the same tested functions (``train_step``/``draw_step``, ``recommend_strategy``/
  ``draw_flowchart``), with a "run it live" note (the Binder/Colab badges are at the top of each page).

Every figure's output also records the size of its smallest text, in pixels of the PNG
(``tl_min_text_px`` in the output's metadata), so that the browser test can check how large that text
shows on the page (tests/e2e/test_site.py).

Learners never run this file: JupyterLab, Binder, Colab and the tests show the real widgets.
"""


def _tl_site_setup() -> None:
    import html

    import tqdm
    import tqdm.auto
    import tqdm.autonotebook
    import tqdm.std

    class _Sink:
        def write(self, s):
            return len(s)

        def flush(self):
            pass

    class TextBar(tqdm.std.tqdm):
        """A text bar that draws nothing while it runs and prints its final state, one line on stdout, when
        it closes (a page shows the end of a run; intermediate redraws would each become a line)."""

        def __init__(self, *args, **kwargs):
            kwargs["file"] = _Sink()
            kwargs["leave"] = True
            kwargs.setdefault("ncols", 80)  # within the text column's width
            kwargs.setdefault("ascii", False)  # the sink is no terminal: say that unicode blocks are fine
            self._tl_printed = False
            super().__init__(*args, **kwargs)

        def close(self):
            disabled = self.disable
            super().close()
            if not disabled and not self._tl_printed:
                self._tl_printed = True
                print(self.format_meter(**self.format_dict), flush=True)

    def trange(*args, **kwargs):
        return TextBar(range(*args), **kwargs)

    for mod in (tqdm.auto, tqdm.autonotebook):
        mod.tqdm, mod.trange = TextBar, trange

    from IPython.display import HTML, Image, display
    from matplotlib_inline import backend_inline

    fetch_metadata = backend_inline._fetch_figure_metadata

    def figure_metadata(fig):
        """The inline backend's metadata of a figure, plus its smallest visible text in PNG pixels."""
        from matplotlib.text import Text

        meta = dict(fetch_metadata(fig) or {})
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        if sizes:
            meta["tl_min_text_px"] = round(min(sizes) * fig.dpi / 72, 2)
        return meta

    backend_inline._fetch_figure_metadata = figure_metadata

    import tlhelpers.widgets as tw

    live = (
        "<p class='tl-static-note'><b>Interactive widget, shown here as a static rendering.</b> "
        "Run it live: open this notebook with the <i>Binder</i> or <i>Colab</i> badge at the top of the page "
        "(or <code>bash course.sh lab</code> on your machine).</p>"
    )

    def pngs(output_widget) -> list[tuple[bytes, dict]]:
        import base64

        return [
            (base64.b64decode(o["data"]["image/png"]), o.get("metadata", {}))
            for o in output_widget.outputs
            if "image/png" in o["data"]
        ]

    def toggles_html(sim) -> str:
        cells = "".join(
            f"<td style='padding:2px 8px;color:white;background:{'#2ca02c' if t.value else '#1f77b4'}'>"
            f"{html.escape(t.description)}</td>"
            for t in sim.toggles.values()
        )
        return f"<table class='tl-static-toggles'><tr>{cells}</tr></table>"

    def show_simulator(self) -> None:
        import copy

        import torch

        display(HTML(live + "<p>The simulator as built:</p>" + toggles_html(self) + f"<p>{self.status.value}</p>"))
        # a scripted interaction on a copy (the notebook's model stays untouched; the RNG state is restored)
        rng = torch.random.get_rng_state()
        try:
            demo = tw.FineTuningSimulator(
                copy.deepcopy(self.model), self.images, self.labels, transform=self.transform, lr=self.lr
            )
            for stage in ("layer4", "fc"):
                if stage in demo.toggles:
                    demo.toggles[stage].value = True
            demo.step()
        finally:
            torch.random.set_rng_state(rng)
        display(
            HTML(
                "<p>A scripted interaction: <b>layer4</b> and <b>fc</b> switched to Trainable, then "
                "<i>Train step</i> pressed once:</p>" + toggles_html(demo) + f"<p>{demo.status.value}</p>"
            )
        )
        for png, meta in pngs(demo.plot):
            display(Image(data=png), metadata=meta)

    def show_guide(self) -> None:
        display(HTML(live + "<p>The guide as built:</p>" + self.out.value))
        if self.chart is not None:
            for png, meta in pngs(self.chart):
                display(Image(data=png), metadata=meta)
        rows = []
        for n, sim, budget in (
            (100, "different", "ample"),
            (10_000, "similar", "ample"),
            (100_000, "different", "ample"),
            (100_000, "similar", "limited"),
        ):
            r = tw.recommend_strategy(n, sim, budget)
            rows.append(
                f"<tr><td>{n:,}</td><td>{sim}</td><td>{budget}</td><td><b>{html.escape(r.strategy)}</b></td>"
                f"<td>{html.escape(r.reason)}</td></tr>"
            )
        display(
            HTML(
                "<p>A scripted interaction: the slider and the buttons moved to other positions give</p>"
                "<table class='tl-static-guide'><tr><th>labelled images</th><th>domain</th><th>budget</th>"
                "<th>recommendation</th><th>why</th></tr>" + "".join(rows) + "</table>"
            )
        )

    tw.FineTuningSimulator._ipython_display_ = show_simulator
    tw.StrategyGuide._ipython_display_ = show_guide


_tl_site_setup()
del _tl_site_setup
