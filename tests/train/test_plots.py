"""The learning-curve figure: whole-number step ticks, and a legend outside the panels."""

from __future__ import annotations

from ladtrain.plots import figure, learning_curves


def test_step_ticks_are_whole_numbers_and_the_legend_covers_no_panel(tmp_path):
    import matplotlib.pyplot as plt

    rows = [{"step": s, "reward_mean": 0.1 * s, "loss": 1.0 / s, "completion_len": 5 + s} for s in (1, 2, 3)]
    fig = figure(rows, "t", {"base": 0.1, "trained": 0.3})
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_legend() is None  # no legend drawn inside a panel
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert "base (held-out)" in labels and "trained (held-out)" in labels
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # below every panel
    plt.close(fig)
    assert learning_curves(rows, tmp_path / "c.png").stat().st_size > 0
