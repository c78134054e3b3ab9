"""The pass@k-curve figure and the learning curves' evaluation panel draw the numbers they are given."""

from __future__ import annotations

import numpy as np
import pytest

from ladtrain import coverage, evaluation, heldout, passk, plots


def _eval(p_correct, ks, rng, n):
    rows, counts = [], []
    for p in p_correct:
        c = list(rng.random(n) < p)
        a = [str(rng.integers(0, 4)) for _ in c]
        rows.append(evaluation.problem_metrics(c, a, [[1, 2]] * n, ks=ks))
        counts.append(coverage.correct_answer_counts(a, c))
    return evaluation.result(rows, counts, [f"p{i}" for i in range(len(rows))], n, ks)


@pytest.fixture
def captured(monkeypatch):
    import matplotlib.figure

    figures = []
    real = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def test_pass_at_k_figure_draws_both_curves_their_intervals_and_the_crossover(tmp_path, captured):
    rng = np.random.default_rng(0)
    ks = passk.powers_of_two(64)
    base = _eval(rng.beta(0.3, 3, 30), ks, rng, 64)
    trained = _eval(np.clip(rng.beta(0.3, 3, 30) * 2, 0, 1) * (rng.random(30) < 0.5), ks, rng, 64)
    v = evaluation.versus(base, trained)
    path = plots.pass_at_k_curves({"held_out": v}, tmp_path / "pass_at_k.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    (fig,) = captured
    top, bottom = fig.axes[:2]
    assert top.get_xscale() == "log" and bottom.get_xscale() == "log"
    base_line, trained_line = [ln for ln in top.lines if ln.get_marker() == "o"]
    assert list(base_line.get_xdata()) == ks
    assert np.allclose(base_line.get_ydata(), v["pass_at_k"]["base"])
    assert np.allclose(trained_line.get_ydata(), v["pass_at_k"]["trained"])
    assert len(top.collections) == 2 and len(bottom.collections) == 1  # the shaded 95% intervals
    band = top.collections[0].get_paths()[0].vertices[:, 1]
    lows = [v["metrics"][f"pass@{k}"]["base"]["lo"] for k in ks]
    assert np.isclose(band.min(), min(lows))
    vertical = [ln for ln in top.lines if ln.get_linestyle() == ":"]
    if v["crossover_k"] is None:
        assert not vertical and "no crossover up to k = 64" in top.get_legend().get_title().get_text()
    else:
        assert vertical[0].get_xdata()[0] == v["crossover_k"]


def test_learning_curves_show_each_eval_set_against_the_step(tmp_path, captured):
    rows = [{"step": s, "reward_mean": 0.1, "loss": 0.2, "completion_len": 5} for s in range(1, 5)]
    rng = np.random.default_rng(1)
    evals = []
    for name, p in (("held_out", 0.3), ("gsm8k", 0.6)):
        for s in (0, 2, 4):  # rows exactly as eval.jsonl holds them
            res = _eval(np.full(6, p), [1, 2], rng, 4)
            evals.append(heldout.eval_row(s, "step", name, res))
    plots.learning_curves(rows, tmp_path / "lc.png", evals=evals)
    (fig,) = captured
    panel = fig.axes[-1]
    assert len(fig.axes) == 4 and "held-out accuracy" in panel.get_title()
    lines = {ln.get_label(): ln for ln in panel.lines}
    assert list(lines["gsm8k"].get_xdata()) == [0, 2, 4]
    assert np.allclose(lines["gsm8k"].get_ydata(), [r["accuracy"] for r in evals if r["eval"] == "gsm8k"])
    band = panel.collections[1].get_paths()[0].vertices[:, 1]  # gsm8k's 95% interval, drawn
    lows = [r["intervals"]["accuracy"]["lo"] for r in evals if r["eval"] == "gsm8k"]
    assert np.isclose(band.min(), min(lows))
    plots.learning_curves(rows, tmp_path / "plain.png")
    assert len(captured[-1].axes) == 3  # no evaluation rows: no fourth panel
