"""Run the attention properties against any attention implementation.

The attention-level properties (definition, convex combination, zero weight on padding, padding
invariance, fully masked rows, low-precision fill, causal future invariance, reshape equals loop,
no NaN) do not call the project's code directly: they take a fixture ``attention_impl``, which this
plugin parametrises over the implementations below, and they see only what an implementation
returns. Each test names its property with ``@pytest.mark.attention_property("property")``; each
parameter gets the spine's ``@pytest.mark.conformance(implementation, property)``, so every outcome
is a cell of the ledger's conformance table; a failure that is known upstream is a strict expected
failure (it turns into an error the day upstream fixes it, so the table stays true).

Built-in implementations:

* ``project-sdpa``: ``transformer.attention.scaled_dot_product_attention``;
* ``project-mha``: ``transformer.attention.MultiHeadAttention`` with identity projections;
* ``torch-sdpa``: ``torch.nn.functional.scaled_dot_product_attention``;
* ``torch-mha-weights`` / ``torch-mha-no-weights``: ``torch.nn.MultiheadAttention`` with identity
  projections, called with ``need_weights=True`` / ``False`` (its mask polarity is the opposite one:
  True = blocked; the adapter converts).

A multi-head module with identity projections W_q = W_k = W_v = W_o = I and zero biases computes
exactly per-head attention on the feature slices of its inputs, so merging the heads of (q, k, v)
into (B, S, H d), calling the module and splitting its output again tests the module's own head
split, merge and scaling (by 1/sqrt(d), the per-head width) against the same properties.

Your own implementation
-----------------------
``pytest properties -m conformance --attention-impl MODULE:FACTORY`` adds an implementation (the
option may be repeated). ``FACTORY`` is called once with no arguments and returns a callable

    attend(q, k, v, allowed) -> out            or            -> (out, weights)

* ``q``: (B, H, S_q, d); ``k``, ``v``: (B, H, S_k, d); one floating dtype (float64 for the exact
  properties; float32, float16 and bfloat16 for the fully-masked-row and low-precision ones);
* ``allowed``: ``None`` or a ``torch.bool`` tensor of rank 4 that broadcasts to (B, H, S_q, S_k):
  True where query i of example b, head h may attend to key j (the convention of
  ``torch.nn.functional.scaled_dot_product_attention``); its leading dimensions may be 1;
* returns ``out`` (B, H, S_q, d) in the inputs' dtype, differentiable with respect to q, k, v, and
  optionally the attention weights (B, H, S_q, S_k);
* scores are scaled by 1 / sqrt(d); a query whose keys are all masked must get a finite output
  that does not depend on the masked keys and values (zeros is the natural choice).

Worked example (``properties/examples/naive_attention.py``, a row-by-row implementation)::

    def make_attention():
        def attend(q, k, v, allowed):
            ...
        return attend

    $ .venv/bin/python -m pytest properties -m conformance \
          --attention-impl properties.examples.naive_attention:make_attention

Its tests appear with the id ``user:properties.examples.naive_attention:make_attention``.
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

PROPERTIES = (
    "definition", "convex-combination", "padding-zero-weight", "padding-invariance", "fully-masked-row",
    "low-precision-fill", "causal-future-invariance", "reshape-equals-loop", "no-nan",
)

_TORCH_41508 = ("pytorch #41508: nn.MultiheadAttention with need_weights=True returns NaN outputs and "
                "weights for a query whose keys are all masked")
# (implementation, property) -> why it fails upstream. Strict: an upstream fix turns it into an error.
KNOWN_FAILURES = {
    ("torch-mha-weights", "fully-masked-row"): _TORCH_41508,
    ("torch-mha-weights", "no-nan"): _TORCH_41508,
}


@dataclass(frozen=True)
class Implementation:
    """An attention implementation under test, normalised to ``(out, weights or None)``."""

    name: str
    attend: Callable
    description: str = ""

    def __call__(self, q, k, v, allowed=None):
        result = self.attend(q, k, v, allowed)
        out, weights = result if isinstance(result, tuple) else (result, None)
        expected = (*q.shape[:-1], v.shape[-1])
        if tuple(out.shape) != expected:
            raise AssertionError(f"{self.name}: output shape {tuple(out.shape)}, expected {expected}")
        return out, weights


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    # (B, H, S, d) -> (B, S, H d)
    B, H, S, d = x.shape
    return x.transpose(1, 2).reshape(B, S, H * d)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # (B, S, H d) -> (B, H, S, d)
    B, S, D = x.shape
    return x.reshape(B, S, heads, D // heads).transpose(1, 2)


@torch.no_grad()
def _identity(linear: nn.Linear) -> None:
    linear.weight.copy_(torch.eye(linear.weight.shape[0], dtype=linear.weight.dtype))
    linear.bias.zero_()


def _project_sdpa(q, k, v, allowed):
    from transformer.attention import scaled_dot_product_attention

    return scaled_dot_product_attention(q, k, v, allowed)


@functools.lru_cache(maxsize=64)
def _project_mha_module(heads: int, d: int, dtype: torch.dtype):
    from transformer.attention import MultiHeadAttention

    module = MultiHeadAttention(heads * d, heads).to(dtype)
    for linear in (module.w_q, module.w_k, module.w_v, module.w_o):
        _identity(linear)
    return module.requires_grad_(False)


def _project_mha(q, k, v, allowed):
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
    _identity(module.out_proj)
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


BUILTIN = (
    Implementation("project-sdpa", _project_sdpa, "transformer.attention.scaled_dot_product_attention"),
    Implementation("project-mha", _project_mha, "transformer.attention.MultiHeadAttention, identity projections"),
    Implementation("torch-sdpa", _torch_sdpa, "torch.nn.functional.scaled_dot_product_attention"),
    Implementation("torch-mha-weights", _torch_mha(True), "torch.nn.MultiheadAttention(need_weights=True)"),
    Implementation("torch-mha-no-weights", _torch_mha(False), "torch.nn.MultiheadAttention(need_weights=False)"),
)


def load_user_implementation(spec: str) -> Implementation:
    """``"package.module:factory"`` -> the Implementation wrapping ``factory()``."""
    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise pytest.UsageError(f"--attention-impl expects MODULE:FACTORY, got {spec!r}")
    factory = getattr(importlib.import_module(module_name), factory_name)
    attend = factory()
    if not callable(attend):
        raise pytest.UsageError(f"{spec}: the factory returned {type(attend).__name__}, not a callable")
    return Implementation(f"user:{spec}", attend, f"{spec} (from --attention-impl)")


def reference_attention(q, k, v, allowed=None):
    """The textbook formula, computed apart from every implementation under test, in float64.

    weights_ij = exp(s_ij - logsumexp_{j' allowed} s_ij') over allowed keys, 0 elsewhere, with
    s = q k^T / sqrt(d); a query with no allowed key gets zero weights and a zero output.
    Shape: -> (out (B, H, S_q, d_v), weights (B, H, S_q, S_k)).
    """
    q, k, v = (t.double() for t in (q, k, v))
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.shape[-1])
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


def pytest_addoption(parser):
    parser.addoption(
        "--attention-impl", action="append", default=[], metavar="MODULE:FACTORY",
        help="also run the attention conformance properties against FACTORY() from MODULE "
             "(see properties/conformance.py); may be repeated")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "attention_property(property): an attention property run against every implementation "
                   "(fixture attention_impl); see properties/conformance.py")


def implementations(config) -> list[Implementation]:
    return [*BUILTIN, *(load_user_implementation(spec) for spec in config.getoption("--attention-impl"))]


def pytest_generate_tests(metafunc):
    if "attention_impl" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("attention_property")
    if marker is None or not marker.args or marker.args[0] not in PROPERTIES:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: an attention_impl test needs "
                                f"@pytest.mark.attention_property(property) with a property in {PROPERTIES}")
    prop = marker.args[0]
    params = []
    for impl in implementations(metafunc.config):
        marks = [pytest.mark.conformance(impl.name, prop)]
        reason = KNOWN_FAILURES.get((impl.name, prop))
        if reason:
            marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
        params.append(pytest.param(impl, id=impl.name, marks=marks))
    metafunc.parametrize("attention_impl", params)
