"""Attention implementations under test: the contract, the built-in rows, loading a user's factory.

The contract every row follows (``MODULE:FACTORY``: ``FACTORY()`` returns the callable)::

    attend(q, k, v, allowed) -> out            or            -> (out, weights)

* ``q``: (B, H, S_q, d); ``k``, ``v``: (B, H, S_k, d); one floating dtype (float64 for the exact
  properties; float32, float16 and bfloat16 for the fully-masked-row and low-precision ones);
* ``allowed``: ``None`` or a ``torch.bool`` tensor of rank 4 that broadcasts to (B, H, S_q, S_k):
  True where query i of example b, head h may attend to key j (the convention of
  ``torch.nn.functional.scaled_dot_product_attention``); its leading dimensions may be 1;
* returns ``out`` (B, H, S_q, d) in the inputs' dtype, differentiable with respect to q, k, v, and
  optionally the attention weights (B, H, S_q, S_k);
* scores are scaled by 1 / sqrt(d); a query whose keys are all masked gets a finite output that does
  not depend on the masked keys and values (zeros is the natural choice), unless the callable
  declares another convention: ``attend.conventions = {"fully-masked-row": "uniform"}`` says that
  such a query deliberately averages all values (a finite fill such as ``finfo.min`` does that).

Optional attributes of the callable: ``conformance_name`` (the row's name; default the spec) and
``conventions``. A factory may instead return a model adapter (``transformer.testing.models``).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

#: Conventions a row may declare for a query that sees no key, and what each one returns.
FULLY_MASKED_CONVENTIONS = {
    "zeros": "a zero output (reads nothing)",
    "uniform": "the average of all values, masked ones included (a finite fill such as finfo.min)",
}


class UsageError(Exception):
    """A factory that cannot be loaded, a bad option or a bad expected-failures file."""


@dataclass(frozen=True)
class Implementation:
    """An attention implementation under test, normalised to ``(out, weights or None)``."""

    name: str
    attend: Callable
    spec: str = ""          # MODULE:FACTORY that builds it again
    description: str = ""
    conventions: dict = field(default_factory=dict)

    def __call__(self, q, k, v, allowed=None):
        result = self.attend(q, k, v, allowed)
        out, weights = result if isinstance(result, tuple) else (result, None)
        expected = (*q.shape[:-1], v.shape[-1])
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise AssertionError(f"output shape {shape}, expected (B, H, S_q, d) = {expected}")
        return out, weights

    @property
    def fully_masked_convention(self) -> str:
        return self.conventions.get("fully-masked-row", "zeros")


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (B, H, S, d) -> (B, S, H d)
    B, H, S, d = x.shape
    return x.transpose(1, 2).reshape(B, S, H * d)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (B, S, H d) -> (B, H, S, d)
    B, S, D = x.shape
    return x.reshape(B, S, heads, D // heads).transpose(1, 2)


@torch.no_grad()
def identity_(linear: nn.Linear) -> None:
    linear.weight.copy_(torch.eye(linear.weight.shape[0], dtype=linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.zero_()


def _project_sdpa(q, k, v, allowed):
    from transformer.attention import scaled_dot_product_attention

    return scaled_dot_product_attention(q, k, v, allowed)


@functools.lru_cache(maxsize=64)
def _project_mha_module(heads: int, d: int, dtype: torch.dtype):
    from transformer.attention import MultiHeadAttention

    module = MultiHeadAttention(heads * d, heads).to(dtype)
    for linear in (module.w_q, module.w_k, module.w_v, module.w_o):
        identity_(linear)
    return module.requires_grad_(False)


def _project_mha(q, k, v, allowed):
    # A multi-head module with identity projections computes per-head attention on the feature slices
    # of its inputs: merging the heads, calling the module and splitting again tests its own split,
    # merge and 1/sqrt(d) scaling against the same properties.
    heads = q.shape[1]
    module = _project_mha_module(heads, q.shape[-1], q.dtype)
    out = module(merge_heads(q), merge_heads(k), merge_heads(v), allowed)
    return split_heads(out, heads), module.last_weights


def _torch_sdpa(q, k, v, allowed):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


@functools.lru_cache(maxsize=64)
def _torch_mha_module(heads: int, d: int, dtype: torch.dtype):
    module = nn.MultiheadAttention(heads * d, heads, batch_first=True).to(dtype)
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.eye(heads * d, dtype=dtype).repeat(3, 1))
        module.in_proj_bias.zero_()
    identity_(module.out_proj)
    return module.requires_grad_(False)


def _torch_mha(need_weights: bool):
    def attend(q, k, v, allowed):
        B, heads, n_q, d = q.shape
        n_k = k.shape[2]
        module = _torch_mha_module(heads, d, q.dtype)
        blocked = None
        if allowed is not None:  # nn.MultiheadAttention: True = blocked, one (S_q, S_k) mask per (example, head)
            blocked = (~allowed).expand(B, heads, n_q, n_k).reshape(B * heads, n_q, n_k)
        out, weights = module(merge_heads(q), merge_heads(k), merge_heads(v), attn_mask=blocked,
                              need_weights=need_weights, average_attn_weights=False)
        return split_heads(out, heads), weights

    return attend


def _named(name: str, attend: Callable, description: str) -> Callable:
    attend.conformance_name, attend.description = name, description
    return attend


def project_sdpa():
    return _named("project-sdpa", _project_sdpa, "transformer.attention.scaled_dot_product_attention")


def project_mha():
    return _named("project-mha", _project_mha, "transformer.attention.MultiHeadAttention, identity projections")


def torch_sdpa():
    return _named("torch-sdpa", _torch_sdpa, "torch.nn.functional.scaled_dot_product_attention")


def torch_mha_weights():
    return _named("torch-mha-weights", _torch_mha(True), "torch.nn.MultiheadAttention(need_weights=True)")


def torch_mha_no_weights():
    return _named("torch-mha-no-weights", _torch_mha(False), "torch.nn.MultiheadAttention(need_weights=False)")


def as_implementation(obj, spec: str) -> Implementation:
    """Wrap an attention callable returned by a factory (its optional name and conventions included)."""
    if not callable(obj):
        raise UsageError(f"{spec}: the factory returned {type(obj).__name__}, not a callable")
    conventions = dict(getattr(obj, "conventions", {}) or {})
    unknown = {c for p, c in conventions.items() if p == "fully-masked-row"} - set(FULLY_MASKED_CONVENTIONS)
    if unknown:
        raise UsageError(f"{spec}: unknown fully-masked-row convention {sorted(unknown)}; "
                         f"known: {', '.join(FULLY_MASKED_CONVENTIONS)}")
    return Implementation(getattr(obj, "conformance_name", spec), obj, spec, getattr(obj, "description", spec),
                          conventions)


BUILTIN = tuple(as_implementation(factory(), f"transformer.testing.implementations:{factory.__name__}")
                for factory in (project_sdpa, project_mha, torch_sdpa, torch_mha_weights, torch_mha_no_weights))


def load_factory(spec: str):
    """``"package.module:factory"`` -> ``factory()`` (an attention callable or a model adapter)."""
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise UsageError(f"expected MODULE:FACTORY, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or whatever the module raises while importing
        raise UsageError(f"{spec}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"{spec}: module {module_name!r} has no callable {factory_name!r}")
    try:
        return factory()
    except Exception as exc:
        raise UsageError(f"{spec}: the factory raised {type(exc).__name__}: {exc}") from None


def load_user_implementation(spec: str) -> Implementation:
    """``"package.module:factory"`` -> the Implementation wrapping ``factory()``."""
    return as_implementation(load_factory(spec), spec)


def reference_attention(q, k, v, allowed=None, scale=None):
    """The textbook formula, computed apart from every implementation under test, in float64.

    weights_ij = exp(s_ij - logsumexp_{j' allowed} s_ij') over allowed keys, 0 elsewhere, with
    s = q k^T / sqrt(d) (or ``scale`` q k^T); a query with no allowed key gets zero weights and a zero
    output. Shape: -> (out (B, H, S_q, d_v), weights (B, H, S_q, S_k)).
    """
    q, k, v = (t.double() for t in (q, k, v))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if allowed is not None:
        scores = scores.masked_fill(~allowed, -math.inf)
    normaliser = torch.logsumexp(scores, dim=-1, keepdim=True)  # -inf on a row without keys
    weights = torch.where(normaliser.isfinite(), (scores - normaliser).exp(), 0.0)
    return torch.einsum("bhij,bhjd->bhid", weights, v), weights


def attention_weights(impl: Implementation, q, k, allowed):
    """The weights an implementation applies, read from its output alone.

    With value rows e_1 .. e_{S_k} (one-hot, zero-padded to the common width) the output row is the
    weight row; products with 0 and 1 and sums of zeros are exact in every dtype. When S_k > d the
    queries and keys get zero columns and q is multiplied by sqrt(width / d), which keeps every
    score q.k / sqrt(d) (to rounding) for implementations that need d_v = d_k.
    Shape: -> (B, H, S_q, S_k).
    """
    B, H, n_q, d = q.shape
    n_k = k.shape[2]
    width = max(d, n_k)
    if width > d:
        q = F.pad((q.double() * math.sqrt(width / d)).to(q.dtype), (0, width - d))
        k = F.pad(k, (0, width - d))
    one_hot = torch.eye(n_k, width, dtype=q.dtype).expand(B, H, n_k, width)
    out, _ = impl(q, k, one_hot, allowed)
    return out[..., :n_k]
