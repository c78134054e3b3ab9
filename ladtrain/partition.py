r"""FlowRL's learned log-partition ``log Z_phi(x)``: a small MLP on the mean prompt hidden state.

FlowRL (Zhu et al. 2025, arXiv 2509.15207) estimates the normaliser of its target
``pi_ref(y|x) exp(beta r_hat(x, y)) / Z(x)`` with a head on the policy's own last hidden layer:

.. math::  \log Z_\phi(x) = \mathrm{MLP}_\phi\Big(\frac{1}{|x|}\sum_{t \in x} h_L(x)_t\Big),

the masked mean over the *prompt* tokens of the last hidden state ``h_L`` (after the final norm, as
``transformers`` returns it), not detached, so the trajectory-balance loss also trains the backbone (as in
FlowRL's code). The MLP is FlowRL's ``ProjZModule`` shape: ``layers - 1`` blocks of ``Linear(H, H), GELU,
LayerNorm`` and a final ``Linear(H, 1)``; the default 3 layers is theirs. Deviation: no dropout (theirs is
0.1) so runs are deterministic given the seed. The head is trained with the policy's optimizer; it is saved
in every resumable checkpoint (``trainer_state.pt``, restored by ``--resume``: :mod:`ladtrain.checkpoint`)
but not in the final Hugging Face checkpoint, which holds the policy alone (FlowRL strips it before
evaluation too).

Shapes: ``B = n_prompts * G`` rows prompt-major; the head runs once per distinct prompt (rows
``0, G, 2G, ...``) and its value is repeated over the group.
"""

from __future__ import annotations

from torch import Tensor, nn


class LogZHead(nn.Module):
    """``(N, H) -> (N,)``: the log-partition estimate from a mean prompt hidden state."""

    def __init__(self, hidden: int, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"LogZHead needs layers >= 1, got {layers}")
        blocks: list[nn.Module] = []
        for _ in range(layers - 1):
            blocks += [nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden)]
        blocks.append(nn.Linear(hidden, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, state: Tensor) -> Tensor:
        return self.net(state).squeeze(-1)  # (N,)


def mean_prompt_state(model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor) -> Tensor:
    """(N, P) left-padded prompts -> (N, H): masked mean of the model's last hidden state over prompt
    tokens (with gradient)."""
    position_ids = (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # (N, P): left padding starts at 0
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids,
                output_hidden_states=True)
    h = out.hidden_states[-1].float()  # (N, P, H)
    m = prompt_mask.to(h.dtype).unsqueeze(-1)  # (N, P, 1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)  # (N, H)


def log_z(
    model: nn.Module, head: LogZHead, prompt_ids: Tensor, prompt_mask: Tensor, group_size: int
) -> Tensor:
    """(B,) ``log Z_phi`` for each row of a prompt-major rollout: computed on rows 0, G, 2G, ... and
    repeated ``G`` times."""
    state = mean_prompt_state(model, prompt_ids[::group_size], prompt_mask[::group_size])  # (B/G, H)
    return head(state).repeat_interleave(group_size)  # (B,)


__all__ = ["LogZHead", "log_z", "mean_prompt_state"]
