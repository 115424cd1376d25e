"""The "pretrained body + new head" figure of notebook 00: fits the website column, text readable."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from tlhelpers import viz  # noqa: E402


def _texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def test_body_head_figure_fits_column_and_reads():
    fig = viz.draw_body_and_head(("cat", "dog"))
    try:
        assert fig.get_figwidth() <= viz.COLUMN_WIDTH
        texts = _texts(fig)
        assert min(t.get_fontsize() for t in texts) >= 8
        words = " ".join(t.get_text() for t in texts)
        assert "512 → 1000" in words and "512 → 2" in words and "cat, dog" in words
        # every label stays inside the figure (nothing clipped on the website)
        fig.canvas.draw()
        box = fig.bbox
        for t in texts:
            e = t.get_window_extent()
            assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1, t.get_text()
            assert e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, t.get_text()
    finally:
        plt.close(fig)


def test_body_head_figure_names_many_classes_by_count():
    fig = viz.draw_body_and_head([f"c{i}" for i in range(10)])
    try:
        words = " ".join(t.get_text() for t in _texts(fig))
        assert "512 → 10" in words and "10 classes" in words
    finally:
        plt.close(fig)


def test_body_head_figure_shows_the_loaded_head():
    fig = viz.draw_body_and_head(("cat", "dog"), source_head=(512, 8), source="pretrained")
    try:
        words = " ".join(t.get_text() for t in _texts(fig))
        assert "pretrained head" in words and "512 → 8" in words and "its 8 classes" in words
        assert "1000" not in words and "ImageNet" not in words
    finally:
        plt.close(fig)
