"""A deliberately naive attention, one query row at a time: the worked example of the contract.

    faq-conformance transformer.testing.examples.naive_attention:make_attention

``make_attention()`` returns ``attend(q, k, v, allowed) -> (out, weights)`` with the signature that
``transformer.testing.implementations`` documents. Replace its body with a call to your own attention
(convert your mask polarity and layout at this boundary) and the same properties run against it.
"""

from __future__ import annotations

import math

import torch


def make_attention():
    def attend(q, k, v, allowed):
        # q (B, H, S_q, d), k and v (B, H, S_k, d), allowed None or bool broadcasting to (B, H, S_q, S_k)
        B, H, n_q, d = q.shape
        n_k = k.shape[2]
        if allowed is None:
            allowed = torch.ones(1, 1, 1, 1, dtype=torch.bool)
        allowed = allowed.expand(B, H, n_q, n_k)
        accumulate = torch.promote_types(q.dtype, torch.float32)
        rows, weight_rows = [], []
        for b in range(B):
            for h in range(H):
                for i in range(n_q):
                    keep = allowed[b, h, i]  # (S_k,)
                    # (S_k,), in float32 at least: half precision only for storage
                    scores = (k[b, h] @ q[b, h, i]).to(accumulate) / math.sqrt(d)
                    weights = torch.zeros(n_k, dtype=scores.dtype)
                    if keep.any():  # a query with no visible key reads nothing: zero weights, zero output
                        weights = weights.masked_scatter(keep, torch.softmax(scores[keep], dim=0))
                    weights = weights.to(q.dtype)
                    weight_rows.append(weights)
                    rows.append(weights @ v[b, h])
        out = torch.stack(rows).reshape(B, H, n_q, v.shape[-1])
        return out, torch.stack(weight_rows).reshape(B, H, n_q, n_k)

    return attend
