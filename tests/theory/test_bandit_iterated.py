"""The iterated bandit variants (ladtheory/bandit_iterated.py, proofs/iterated_lad.py): with a refreshed
reference, LAD run to its per-round target keeps pi_0's ratios between equal-advantage arms; gradient
steps (GRPO, and LAD at a few steps per round) favour the more probable arm. Also: the committed results
say what the README and the book say."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ladtheory import bandit_iterated as bi
from ladtheory import reductions
from ladtheory.book import REPO
from ladtheory.objective import lad_loss

torch.set_num_threads(1)
SMALL = bi.IteratedConfig(rounds=6, lbfgs_iters=150, adam_steps="200", step_rounds=300, sgd_steps="1",
                          sampled_steps=30, sampled_seeds=1)
COMMITTED = REPO / "results" / "bandit" / "iterated" / "iterated.json"


@pytest.fixture(scope="module")
def small_run():
    return bi.run(SMALL)


def test_bandit_iterated_setup_has_equal_advantage_peaks_and_a_tilted_base():
    prob = bi.problem(SMALL)
    peaks = prob.advantage[list(bi.PEAKS)]
    assert float(peaks.max() - peaks.min()) < 1e-11  # equal heights: equal advantage at the peaks
    assert float(prob.advantage.max() - peaks.max()) < 1e-11
    ratio = math.exp(float(prob.log_pi0[25] - prob.log_pi0[10]))
    assert ratio == pytest.approx(4 ** (-15 / 49), rel=1e-12)


def test_bandit_iterated_exact_loss_is_the_expectation_of_lad_loss():
    """lad_exact_loss (used with a non-uniform pi_old) equals K x lad_loss's row mean at a uniform pi_old."""
    g = torch.Generator().manual_seed(3)
    k = 50
    theta = torch.randn(k, generator=g, dtype=torch.float64, requires_grad=True)
    log_old = torch.full((k,), -math.log(k), dtype=torch.float64)
    adv = torch.randn(k, generator=g, dtype=torch.float64)
    exact = reductions.lad_exact_loss(torch.log_softmax(theta, 0), log_old, adv, 0.25, "js")
    sampled, _ = lad_loss(torch.log_softmax(theta, 0)[:, None], log_old[:, None], adv,
                          torch.ones(k, 1, dtype=torch.bool), divergence="js", eta=0.25, level="sequence")
    assert float(exact.detach()) == pytest.approx(float(sampled.detach()), rel=1e-12)


def test_bandit_iterated_lad_to_target_keeps_pi0_ratios(small_run):
    base = small_run["base"]
    m = small_run["methods"]["lad:js target"]
    assert m["max_round_tv_to_target"] < 1e-5
    assert m["tv_to_closed_form"] < 1e-5
    assert m["ratio_25_10"] == pytest.approx(base["ratio_25_10"], rel=1e-4)
    assert m["ratio_40_10"] == pytest.approx(base["ratio_40_10"], rel=1e-4)
    assert m["equal_advantage_log_ratio_drift"] < 1e-4 and m["equal_advantage_pairs"] >= 2
    assert m["expected_advantage"] > base["expected_advantage"] + 0.5  # it did move towards argmax A
    adam = small_run["methods"]["lad:js adam 200"]
    assert adam["ratio_25_10"] == pytest.approx(base["ratio_25_10"], rel=2e-2)


def test_bandit_iterated_gradient_steps_favour_the_more_probable_arm(small_run):
    base = small_run["base"]
    for name in ("lad:js sgd 1", "grpo sgd 1"):
        m = small_run["methods"][name]
        assert m["ratio_25_10"] < 0.5 * base["ratio_25_10"], (name, m["ratio_25_10"])
        assert m["ratio_40_10"] < 0.5 * base["ratio_40_10"], (name, m["ratio_40_10"])
        assert m["argmax"] == 10


def test_bandit_iterated_committed_results_match_the_claims():
    result = json.loads(COMMITTED.read_text())
    base, methods = result["base"], result["methods"]
    assert bi.IteratedConfig(**result["config"]) == bi.IteratedConfig()  # the default run is committed
    target = methods["lad:js target"]
    assert target["ratio_25_10"] == pytest.approx(base["ratio_25_10"], rel=1e-3)
    assert target["ratio_40_10"] == pytest.approx(base["ratio_40_10"], rel=1e-3)
    assert target["window_mass"] > 0.999
    for name in ("lad:js sgd 1", "lad:js sgd 8", "grpo sgd 1", "grpo sgd 8"):
        assert methods[name]["ratio_25_10"] < 1e-3 * base["ratio_25_10"], name
        assert methods[name]["window_mass"] > 0.999, name
    sampled = [m for n, m in methods.items() if "sampled" in n]
    assert len(sampled) == 3 and all(m["max_prob"] > 0.999 for m in sampled)  # one arm per seed
    assert len({m["argmax"] for m in sampled}) > 1  # which arm: the draws decide


def test_bandit_iterated_sampled_variant_uses_lad_loss_on_the_drawn_group(small_run):
    (name,) = [n for n in small_run["methods"] if "sampled" in n]
    m = small_run["methods"][name]
    assert m["steps_per_round"] == SMALL.sampled_steps and m["rounds"] == SMALL.rounds
    assert m["expected_advantage"] > small_run["base"]["expected_advantage"]  # it learned from the draws


def test_bandit_iterated_cli_rejects_bad_input_with_one_line(tmp_path, capsys):
    assert bi.main(["--out", str(tmp_path / "x"), "--eta", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --eta") and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_bandit_iterated_readme_quotes_the_committed_numbers():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Reference refreshed every round", 1)[1].split("\n### ", 1)[0]
    m = json.loads(COMMITTED.read_text())["methods"]
    assert f"{m['lad:js target']['ratio_25_10']:.4f} and {m['lad:js target']['ratio_40_10']:.4f}" in section
    for name in ("lad:js sgd 1", "grpo sgd 1", "grpo sgd 8"):
        quoted = f"{m[name]['ratio_25_10']:.1e} / {m[name]['ratio_40_10']:.1e}".replace("e-0", "e-")
        assert quoted in section, (name, quoted)
