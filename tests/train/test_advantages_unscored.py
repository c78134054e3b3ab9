"""Unscorable samples (reward NaN) drop out of the group statistics (TRL 1.16's ``nanmean`` / ``nanstd``),
checked against a hand computation; the control shows that filling them with the group mean (the former
behaviour) inflates the other advantages by sqrt(7/3) = 1.53 with 4 of 8 unscored."""

from __future__ import annotations

import math

import torch

from ladtrain.advantages import group_advantages

NAN = math.nan


def test_four_of_eight_unscored_use_the_four_scored_rewards_only():
    r = torch.tensor([1.0, 0.0, 1.0, NAN, NAN, 0.0, NAN, NAN], dtype=torch.float64)
    a = group_advantages(r, 8, eps=0.0)
    # by hand: scored 1, 0, 1, 0 -> mean 1/2, sample variance (4 * 1/4) / 3 = 1/3, A = +-(1/2) sqrt(3)
    want = torch.tensor([1, -1, 1, 0, 0, -1, 0, 0], dtype=torch.float64) * 0.5 * math.sqrt(3.0)
    torch.testing.assert_close(a, want, rtol=0, atol=1e-12)
    filled = torch.where(torch.isnan(r), torch.tensor(0.5, dtype=torch.float64), r)
    inflated = group_advantages(filled, 8, eps=0.0)
    assert math.isclose(float(inflated[0] / a[0]), math.sqrt(7 / 3), rel_tol=1e-12)  # the fill is wrong


def test_unscored_rows_of_other_scales_and_degenerate_groups():
    r = torch.tensor([1.0, NAN, 0.0, 0.0, NAN, NAN, NAN, 2.0], dtype=torch.float64)
    a = group_advantages(r, 4, scale="none")
    # group 1: mean 1/3 -> 2/3, 0, -1/3, -1/3; group 2 has one scored sample: no spread, A = 0
    torch.testing.assert_close(a, torch.tensor([2 / 3, 0, -1 / 3, -1 / 3, 0, 0, 0, 0], dtype=torch.float64))
    b = group_advantages(r, 4, scale="batch_std", eps=0.0)
    std = torch.tensor([1.0, 0.0, 0.0, 2.0], dtype=torch.float64).std()  # the 4 scored rewards of the batch
    torch.testing.assert_close(b[:4], torch.tensor([2 / 3, 0, -1 / 3, -1 / 3], dtype=torch.float64) / std)
    assert not torch.isnan(group_advantages(torch.full((4,), NAN), 2)).any()


def test_fully_scored_groups_are_unchanged():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.25, 1.0])
    centred = r.view(2, 4) - r.view(2, 4).mean(1, keepdim=True)
    scale = r.view(2, 4).std(1, keepdim=True) + 1e-6
    torch.testing.assert_close(group_advantages(r, 4), (centred / scale).flatten())
