"""verl plug-in: the ``"lad"`` policy loss, called exactly as verl calls a registered policy loss.

verl cannot share an environment with ``lad[train]`` (verl 0.9.1 pins transformers<5.11), so these tests use
a local stand-in of verl's registry (``register_policy_loss`` = a decorator filling a dict, as in verl 0.9.1
``core_algos.py``) and run in the main environment; the last two also run against the real verl. CI runs this
file and ``test_integrations_verl_installed.py`` (verl's own config objects and loss call site) in a second
environment with verl installed (``.venv-verl``, see ``.ci/run``)."""

from __future__ import annotations

import inspect

import pytest
import torch

import ladtheory.objective
from ladtheory.objective import lad_loss
from ladtrain.integrations import verl as lad_verl

B, T = 6, 5


def _batch(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logp_old = -torch.rand(B, T, generator=g, dtype=dtype) * 3
    logp = (logp_old + 0.3 * torch.randn(B, T, generator=g, dtype=dtype)).requires_grad_()
    lengths = torch.tensor([5, 3, 1, 4, 2, 5])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(dtype)  # (B, T), unequal lengths
    adv = torch.randn(B, generator=g, dtype=dtype)  # (B,)
    adv_tokens = adv[:, None] * mask + 7.0 * (1 - mask)  # (B, T): verl broadcasts; padding holds junk
    return logp, logp_old, adv, adv_tokens, mask


class StandIn:
    """verl's registry pattern: ``register_policy_loss(name)`` is a decorator storing the function."""

    def __init__(self):
        self.registry = {}

    def register_policy_loss(self, name):
        def decorator(fn):
            self.registry[name] = fn
            return fn

        return decorator


def _call(fn, logp, logp_old, adv_tokens, mask, **kw):
    """verl's call site (``verl/workers/utils/losses.py::ppo_loss``): keyword arguments only."""
    return fn(old_log_prob=logp_old, log_prob=logp, advantages=adv_tokens, response_mask=mask,
              loss_agg_mode=kw.pop("loss_agg_mode", "token-mean"), config=kw.pop("config", None),
              rollout_is_weights=kw.pop("rollout_is_weights", None))


def test_verl_plugin_uses_the_theory_lad_loss_itself():
    assert lad_verl.lad_loss is ladtheory.objective.lad_loss


def test_verl_policy_loss_registered_under_lad_equals_lad_loss_on_the_same_tensors():
    standin = StandIn()
    lad_verl.register("lad", registry_decorator=standin.register_policy_loss, divergence="kl", eta=0.5)
    fn = standin.registry["lad"]
    logp, logp_old, adv, adv_tokens, mask = _batch()
    loss, metrics = _call(fn, logp, logp_old, adv_tokens, mask)
    want, terms = lad_loss(logp, logp_old, adv, mask, divergence="kl", eta=0.5)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=0)
    assert set(metrics) == {f"actor/lad_{k}" for k in terms}
    assert all(isinstance(v, float) for v in metrics.values())
    # Same argument names, order and defaults as verl's PolicyLossFn (compute_policy_loss_vanilla).
    params = inspect.signature(fn).parameters
    assert list(params) == [
        "old_log_prob",
        "log_prob",
        "advantages",
        "response_mask",
        "loss_agg_mode",
        "config",
        "rollout_is_weights",
    ]
    assert params["loss_agg_mode"].default == "token-mean"


@pytest.mark.parametrize("level,mode,key", [("token", "token-mean", "batch_num_tokens"),
                                            ("sequence", "seq-mean-token-mean", "global_batch_size"),
                                            ("sequence_mean", "seq-mean-token-sum", "global_batch_size")])
def test_verl_policy_loss_is_invariant_to_micro_batches_and_data_parallel_ranks(level, mode, key):
    """verl splits a global batch into micro-batches (gradients summed) and dp ranks (gradients averaged);
    with ``config.global_batch_info`` the pieces must give the full-batch lad_loss and its gradient."""
    fn = lad_verl.policy_loss("js", 0.25, level)
    logp, logp_old, adv, adv_tokens, mask = _batch(1)
    full, _ = lad_loss(logp, logp_old, adv, mask, divergence="js", eta=0.25, level=level)
    (full_grad,) = torch.autograd.grad(full, logp)
    total = {"batch_num_tokens": int(mask.sum()), "global_batch_size": B}[key]

    # one rank, micro-batches of 2 and 4 rows: sum of the micro-batch losses
    parts = [slice(0, 2), slice(2, 6)]
    cfg = {"global_batch_info": {"dp_size": 1, key: total}}
    micro = sum(_call(fn, logp[s], logp_old[s], adv_tokens[s], mask[s], loss_agg_mode=mode, config=cfg)[0]
                for s in parts)
    torch.testing.assert_close(micro, full, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(micro, logp)
    torch.testing.assert_close(grad, full_grad, rtol=1e-12, atol=1e-15)

    # two ranks of 3 rows (unequal token counts): DDP averages, so the mean of the two rank losses
    cfg = {"global_batch_info": {"dp_size": 2, key: total}}
    ranks = [_call(fn, logp[s], logp_old[s], adv_tokens[s], mask[s], loss_agg_mode=mode, config=cfg)[0]
             for s in (slice(0, 3), slice(3, 6))]
    torch.testing.assert_close((ranks[0] + ranks[1]) / 2, full, rtol=1e-12, atol=0)


def test_verl_policy_loss_reads_the_environment_when_not_fixed(monkeypatch):
    fn = lad_verl.policy_loss()
    logp, logp_old, adv, adv_tokens, mask = _batch(2)
    monkeypatch.setenv("LAD_DIVERGENCE", "hellinger")
    monkeypatch.setenv("LAD_ETA", "0.7")
    loss, _ = _call(fn, logp, logp_old, adv_tokens, mask)
    want, _ = lad_loss(logp, logp_old, adv, mask, divergence="hellinger", eta=0.7)
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=0)
    other, _ = lad_loss(logp, logp_old, adv, mask, divergence="js", eta=0.25)
    assert not torch.allclose(loss, other)


def test_verl_policy_loss_refuses_what_lad_cannot_take_in_one_line():
    fn = lad_verl.policy_loss("js", 0.25, "token")
    logp, logp_old, adv, adv_tokens, mask = _batch(3)
    gae_like = adv_tokens + 0.1 * torch.arange(T, dtype=adv_tokens.dtype)  # varies along each response
    with pytest.raises(ValueError, match="one advantage per response"):
        _call(fn, logp, logp_old, gae_like, mask)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        _call(fn, logp, logp_old, adv_tokens, mask, loss_agg_mode="seq-mean-token-mean")
    with pytest.raises(ValueError, match="rollout_is_weights"):
        _call(fn, logp, logp_old, adv_tokens, mask, rollout_is_weights=torch.ones(B, T))
    with pytest.raises(ladtheory.divergences.DivergenceError):
        lad_verl.policy_loss("not-a-divergence")


def test_verl_real_registry_has_lad_after_loading_the_plugin(monkeypatch):
    core_algos = pytest.importorskip(
        "verl.trainer.ppo.core_algos", reason="verl is not installed (see module doc)"
    )
    lad_verl.register("lad")
    fn = core_algos.get_policy_loss_fn("lad")
    assert list(inspect.signature(fn).parameters) == list(
        inspect.signature(core_algos.compute_policy_loss_vanilla).parameters)
    logp, logp_old, adv, adv_tokens, mask = _batch(4)
    full, _ = lad_loss(logp, logp_old, adv, mask)
    # verl's own aggregation of a constant loss matrix gives the normaliser the adapter must reproduce:
    # token-mean over a global batch of two ranks, the other holding twice this rank's tokens.
    info = {"dp_size": 2, "batch_num_tokens": 3 * int(mask.sum()), "global_batch_size": 3 * B}
    ones = core_algos.agg_loss(loss_mat=torch.ones(B, T, dtype=torch.float64), loss_mask=mask,
                               loss_agg_mode="token-mean", **info)
    loss, _ = _call(fn, logp, logp_old, adv_tokens, mask, config={"global_batch_info": info})
    torch.testing.assert_close(loss, full * ones, rtol=1e-12, atol=0)


def test_verl_loads_the_plugin_through_its_external_modules_switch():
    pytest.importorskip("verl.trainer.ppo.core_algos", reason="verl is not installed (see module doc)")
    import os
    import subprocess
    import sys

    code = ("import verl\nfrom verl.trainer.ppo.core_algos import get_policy_loss_fn\n"
            "print(get_policy_loss_fn('lad').__module__)")
    env = {**os.environ, "VERL_USE_EXTERNAL_MODULES": "ladtrain.integrations.verl"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "ladtrain.integrations.verl"
