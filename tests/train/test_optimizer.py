"""The trainer's AdamW (``ladtrain.start.adamw``): fused where torch has the kernel for every parameter,
and then the same update as torch's default implementation to float32 round-off (oracle: the default
``torch.optim.AdamW`` from the same start, fed the same gradients). Control: an update at another
learning rate is outside that tolerance."""

from __future__ import annotations

import pytest
import torch

from ladtrain.start import adamw


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((7, 5), (5,), (3, 4, 2))]


def _run(opt_of, lr=1e-2, steps=6):
    params = _params()
    opt = opt_of(params, lr)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return opt, torch.cat([p.detach().flatten() for p in params])


def test_fused_on_plain_cpu_parameters_and_the_default_update():
    fused, after = _run(lambda ps, lr: adamw(ps, lr, 0.1))
    assert all(group["fused"] is True for group in fused.param_groups)
    _, reference = _run(lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1))
    start = torch.cat([p.detach().flatten() for p in _params()])
    assert float((after - start).abs().max()) > 1e-3  # it moved
    torch.testing.assert_close(after, reference, rtol=0, atol=1e-6)


def test_another_learning_rate_is_caught():
    _, after = _run(lambda ps, lr: adamw(ps, lr * 1.01, 0.1))
    _, reference = _run(lambda ps, lr: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1))
    with pytest.raises(AssertionError):
        torch.testing.assert_close(after, reference, rtol=0, atol=1e-6)


def test_default_implementation_where_the_kernel_is_not_known():
    elsewhere = [torch.nn.Parameter(torch.zeros(3, device="meta"))]  # another device
    assert adamw(elsewhere, 1e-3, 0.0).param_groups[0]["fused"] is None
    sub = type("Sharded", (torch.nn.Parameter,), {})  # a Parameter subclass, as FSDP2's DTensor is
    assert adamw([sub(torch.zeros(3))], 1e-3, 0.0).param_groups[0]["fused"] is None
