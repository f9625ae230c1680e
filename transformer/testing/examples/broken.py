"""Attentions with one classic mistake each: what every diagnosis looks like, and proof that the
properties can fail. ``faq-conformance transformer.testing.examples.broken:no_scale`` shows one.

Each factory returns ``attend(q, k, v, allowed)`` (the contract of ``transformer.testing.implementations``)
that differs from the textbook attention in exactly the way its name says.
"""

from __future__ import annotations

import math

import torch


def _scores(q, k, scale):
    # (B, H, S_q, d), (B, H, S_k, d) -> (B, H, S_q, S_k)
    return (q @ k.transpose(-2, -1)) * scale


def _textbook(scale=None, fill=-math.inf, zero_empty=True, axis=-1, flip=False, after=False):
    def attend(q, k, v, allowed):
        s = _scores(q, k, 1 / math.sqrt(q.shape[-1]) if scale is None else scale(q.shape[-1]))
        mask = None if allowed is None else (~allowed if flip else allowed)
        if mask is not None and not after:
            s = s.masked_fill(~mask, fill)
        w = torch.softmax(s, dim=axis)
        if mask is not None and after:
            w = w * mask
        if zero_empty and mask is not None:
            w = torch.where(mask.any(-1, keepdim=True), w, 0.0)
        return w @ v, w

    return attend


def no_scale():
    """Scores not divided by sqrt(d)."""
    return _textbook(scale=lambda d: 1.0)


def scale_by_d():
    """Scores divided by d instead of sqrt(d)."""
    return _textbook(scale=lambda d: 1.0 / d)


def flipped_mask():
    """True read as "blocked" (nn.MultiheadAttention's polarity) without converting."""
    return _textbook(flip=True)


def softmax_over_queries():
    """The softmax normalises over the queries (dim -2) instead of the keys."""
    return _textbook(axis=-2)


def mask_after_softmax():
    """The mask zeroes weights after the softmax; rows no longer sum to one."""
    return _textbook(after=True)


def minus_1e9_fill():
    """The tutorial fill -1e9, which float16 cannot hold."""
    return _textbook(fill=-1e9, zero_empty=False)


def minus_inf_fill():
    """A -inf fill, and nothing done about a query with no visible key (NaN)."""
    return _textbook(fill=-math.inf, zero_empty=False)


def finfo_min_fill():
    """A finite fill torch.finfo(dtype).min: a query with no visible key averages every value."""
    def attend(q, k, v, allowed):
        s = _scores(q, k, 1 / math.sqrt(q.shape[-1]))
        if allowed is not None:
            s = s.masked_fill(~allowed, torch.finfo(s.dtype).min)
        w = torch.softmax(s, dim=-1)
        return w @ v, w

    return attend


def finfo_min_fill_declared():
    """The same, declaring its convention for a query with no visible key."""
    attend = finfo_min_fill()
    attend.conventions = {"fully-masked-row": "uniform"}
    attend.conformance_name = "finfo-min-declared"
    return attend


def heads_mixed():
    """Heads merged by a reshape without the transpose: each head attends over another head's values."""
    textbook = _textbook()

    def attend(q, k, v, allowed):
        out, w = textbook(q, k, v, allowed)
        B, H, S, d = out.shape
        return out.transpose(1, 2).reshape(B, H, S, d), None

    return attend


def causal_off_by_one():
    """Each query also sees the next key (a causal mask built with j <= i + 1)."""
    textbook = _textbook()

    def attend(q, k, v, allowed):
        if allowed is not None and torch.equal(allowed, torch.ones_like(allowed).tril()):
            allowed = torch.ones_like(allowed).tril(1)
        return textbook(q, k, v, allowed)

    return attend


def mask_ignored():
    """The mask is accepted and never applied."""
    textbook = _textbook()
    return lambda q, k, v, allowed: textbook(q, k, v, None)


def causal_hides_present():
    """A causal mask built with j < i: a query does not see its own position."""
    textbook = _textbook()

    def attend(q, k, v, allowed):
        if allowed is not None and torch.equal(allowed, torch.ones_like(allowed).tril()):
            allowed = torch.ones_like(allowed).tril(-1)
        return textbook(q, k, v, allowed)

    return attend


def no_max_subtraction():
    """exp(s) / sum exp(s) without subtracting the row maximum: overflows for large scores."""
    def attend(q, k, v, allowed):
        s = _scores(q, k, 1 / math.sqrt(q.shape[-1]))
        e = s.exp() if allowed is None else s.exp().masked_fill(~allowed, 0.0)
        total = e.sum(-1, keepdim=True)
        w = torch.where(total > 0, e / total, 0.0)
        return w @ v, w

    return attend


def not_a_callable():
    return 42


def raises_on_construction():
    raise RuntimeError("no GPU here")
