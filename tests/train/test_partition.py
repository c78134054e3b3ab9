"""FlowRL's log Z head: the mean prompt state ignores left padding, and the head trains the backbone."""

from __future__ import annotations

import torch

from ladtrain.models import TinySpec, build_tiny_model, build_tokenizer
from ladtrain.partition import LogZHead, log_z, mean_prompt_state

torch.set_num_threads(1)


def _tiny():
    tok = build_tokenizer()
    model = build_tiny_model(
        tok, TinySpec(hidden=32, layers=1, heads=2, intermediate=64, max_positions=32), seed=0
    )
    return tok, model.eval()


def test_mean_prompt_state_is_the_masked_mean_and_ignores_left_padding():
    tok, model = _tiny()
    enc = tok(["Use 1 2", "Use 3 4 5"], return_tensors="pt", padding=True, add_special_tokens=False)
    state = mean_prompt_state(model, enc["input_ids"], enc["attention_mask"])  # (2, H)
    alone = tok(["Use 1 2"], return_tensors="pt", add_special_tokens=False)
    h = model(input_ids=alone["input_ids"], output_hidden_states=True).hidden_states[-1][0]  # (P, H)
    torch.testing.assert_close(state[0], h.mean(0), rtol=1e-4, atol=1e-5)


def test_log_z_is_shared_by_a_group_and_trains_the_backbone():
    tok, model = _tiny()
    head = LogZHead(32)
    enc = tok(["Use 1 2", "Use 3 4 5"], return_tensors="pt", padding=True, add_special_tokens=False)
    G = 3
    ids, mask = enc["input_ids"].repeat_interleave(G, 0), enc["attention_mask"].repeat_interleave(G, 0)
    z = log_z(model, head, ids, mask, G)  # (6,)
    assert z.shape == (6,)
    assert torch.equal(z[:3], z[0].expand(3)) and torch.equal(z[3:], z[3].expand(3))
    z.sum().backward()
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0
    assert head.net[-1].weight.grad.abs().sum() > 0
