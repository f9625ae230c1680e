"""The attention conformance properties: each one a claim, a strategy of cases and a check.

A case is a small dict of plain values (a layout (B, H, S_q, S_k, d), a boolean mask or None, a
seed, sometimes a dtype or a position), so that a shrunk failing case prints as one line that
``transformer.testing.replay`` runs again. A check raises ``PropertyFailure`` with a message in words
(``diagnosis``) when the implementation breaks the claim; anything else it raises is a failure too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from . import diagnosis
from .implementations import Implementation, attention_weights, reference_attention
from .strategies import (
    LOW_PRECISION,
    PADDING,
    attention_cases,
    attention_layouts,
    gaussian,
    live_rows,
    seeds,
)
from .tolerances import BY_DTYPE, EXACT_ZERO, FLOAT64, VISIBLE

TOL = dict(rtol=FLOAT64.rtol, atol=FLOAT64.atol)
ALL_DTYPES = (torch.float64, torch.float32, *LOW_PRECISION)
DTYPES = {str(d).removeprefix("torch."): d for d in ALL_DTYPES}
#: (B, H, S_q, S_k, d) = (3, 2, 2, 4, 2); example 1 is only padding, so its queries see no key.
PADDED_WITH_EMPTY_EXAMPLE = dict(layout=(3, 2, 2, 4, 2), seed=0,
                                 allowed=(torch.tensor([4, 0, 2])[:, None, None, None] > torch.arange(4)).int().tolist())

#: (B, H, S_q, S_k, d) = (1, 2, 1, 2, 1) in float16 at the no-nan scale: head 0's query sees no key and
#: both its scores are below -300, so a finite fill added to them (finfo.min + score) leaves float16's
#: range. Random cases rarely line up every score of an empty row this way.
EMPTY_ROW_WITH_NEGATIVE_SCORES = dict(layout=(1, 2, 1, 2, 1), seed=10, allowed=[[[[0, 0]], [[1, 1]]]], dtype="float16")


class PropertyFailure(AssertionError):
    """An implementation breaks a property; the message says how, in words.

    ``because`` (a callable returning the probable cause) runs only when the message is read, so
    that the search and its shrinking do not pay for a diagnosis at every failing example.
    """

    def __init__(self, message: str, because: Callable[[], str] | None = None):
        super().__init__(message)
        self.message, self.because, self._text = message, because, None

    def __str__(self) -> str:
        if self._text is None:
            self._text = self.message
            if self.because is not None:
                try:
                    self._text += f"; probably: {self.because()}"
                except Exception as exc:  # noqa: BLE001 - a diagnosis must never hide the failure
                    self._text += f" (no diagnosis: {type(exc).__name__}: {exc})"
        return self._text


@dataclass(frozen=True)
class Property:
    name: str
    claim: str                      # the claim, in plain words
    cases: Callable[..., st.SearchStrategy]  # row -> strategy of cases
    check: Callable[[Implementation, dict], None]
    examples: tuple = field(default=())  # cases always tried first


def qkv(layout, seed, dtype=torch.float64, scale=1.0):
    B, H, n_q, n_k, d = layout
    return (gaussian((B, H, n_q, d), seed, dtype, scale), gaussian((B, H, n_k, d), seed + 1, dtype, scale),
            gaussian((B, H, n_k, d), seed + 2, dtype))


def mask_of(case) -> torch.Tensor | None:
    allowed = case.get("allowed")
    return None if allowed is None else torch.tensor(allowed, dtype=torch.bool)


def dtype_of(case) -> torch.dtype:
    return DTYPES[case.get("dtype", "float64")]


def _case(layout, allowed, **more) -> dict:
    return dict(layout=tuple(layout), allowed=None if allowed is None else allowed.int().tolist(), **more)


def _cases(**kwargs):
    return st.builds(lambda c, seed: _case(*c, seed=seed), attention_cases(**kwargs), seeds)


def _with_dtype(strategy, dtypes):
    return st.builds(lambda c, dtype: {**c, "dtype": str(dtype).removeprefix("torch.")}, strategy, st.sampled_from(dtypes))


def fail(message: str, because: Callable[[], str] | None = None):
    raise PropertyFailure(message, because)


def _assert_close(actual, expected, what: str, tol=FLOAT64, because: Callable[[], str] | None = None):
    if actual.shape != expected.shape:
        fail(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.allclose(actual.double(), expected.double(), rtol=tol.rtol, atol=tol.atol, equal_nan=False):
        err = float((actual.double() - expected.double()).abs().nan_to_num(math.inf).max())
        words = f"{what} (largest difference {err:.3g})"
        fail(words, because)


# ---------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------

def check_definition(impl: Implementation, case: dict) -> None:
    """out = softmax(q k^T / sqrt(d) restricted to allowed keys) v on every query that sees a key."""
    q, k, v = qkv(case["layout"], case["seed"])
    allowed = mask_of(case)
    out, weights = impl(q, k, v, allowed)
    expected, expected_weights = reference_attention(q, k, v, allowed)
    live = live_rows(allowed, expected_weights.shape)
    because = lambda: diagnosis.diagnose_output(impl, q, k, v, allowed)  # noqa: E731
    _assert_close(out[live], expected[live], "output differs from softmax(Q K^T / sqrt(d)) V", because=because)
    if weights is not None:
        _assert_close(weights[live], expected_weights[live], "returned weights differ from softmax(Q K^T / sqrt(d))")


def check_convex_combination(impl: Implementation, case: dict) -> None:
    """Weights are >= 0 and sum to 1 over the allowed keys; every output lies within its value rows' bounds."""
    B, H, n_q, n_k, d = layout = case["layout"]
    q, k, v = qkv(layout, case["seed"])
    allowed = mask_of(case)
    out, returned = impl(q, k, v, allowed)
    because = lambda: diagnosis.diagnose_output(impl, q, k, v, allowed)  # noqa: E731
    for source, weights in [("read from the outputs", attention_weights(impl, q, k, allowed))] + \
            [("returned", returned)] * (returned is not None):
        if (weights < 0).any():
            fail(f"negative weight {weights.min().item():.3g} ({source})", because)
        _assert_close(weights.sum(-1), torch.ones(B, H, n_q), f"weights ({source}) do not sum to 1", because=because)
    visible = allowed.expand(B, H, n_q, n_k)[..., None]  # (B, H, S_q, S_k, 1)
    low = torch.where(visible, v[:, :, None], math.inf).amin(-2)  # (B, H, S_q, d)
    high = torch.where(visible, v[:, :, None], -math.inf).amax(-2)
    slack = FLOAT64.atol + FLOAT64.rtol * v.abs().max()
    if not ((out >= low - slack).all() and (out <= high + slack).all()):
        fail("an output leaves the bounds of its visible value rows", because)


def check_padding_zero_weight(impl: Implementation, case: dict) -> None:
    """Every masked key gets weight exactly 0.0 (read from the outputs with one-hot values, and returned)."""
    layout = case["layout"]
    q, k, v = qkv(layout, case["seed"])
    allowed = mask_of(case)
    _, returned = impl(q, k, v, allowed)
    blocked = ~allowed.expand(*layout[:3], layout[3])
    for source, weights in [("read from the outputs", attention_weights(impl, q, k, allowed))] + \
            [("returned", returned)] * (returned is not None):
        leaked = weights[blocked]
        if not (leaked == EXACT_ZERO).all():
            fail(f"masked keys got weights up to {leaked.abs().max().item():.3g} ({source})",
                 lambda: diagnosis.diagnose_output(impl, q, k, v, allowed))


def check_padding_invariance(impl: Implementation, case: dict) -> None:
    """Rewriting padded keys and values with large garbage, and appending more padding, leaves every
    row that sees a real key unchanged."""
    B, H, n_q, n_k, d = layout = case["layout"]
    seed, extra = case["seed"], case["extra"]
    q, k, v = qkv(layout, seed)
    allowed = mask_of(case)
    out, _ = impl(q, k, v, allowed)
    padded = ~allowed.any(dim=(1, 2))[:, None, :, None]  # (B, 1, S_k, 1): keys no query of the example sees
    garbage_k, garbage_v = (gaussian((B, H, n_k + extra, d), seed + i, scale=1e3) for i in (3, 4))
    k2 = torch.cat([torch.where(padded, garbage_k[:, :, :n_k], k), garbage_k[:, :, n_k:]], 2)
    v2 = torch.cat([torch.where(padded, garbage_v[:, :, :n_k], v), garbage_v[:, :, n_k:]], 2)
    allowed2 = torch.cat([allowed, torch.zeros(*allowed.shape[:-1], extra, dtype=torch.bool)], -1)
    out2, _ = impl(q, k2, v2, allowed2)
    live = live_rows(allowed, (B, H, n_q, n_k))
    _assert_close(out2[live], out[live], "outputs change when padded keys/values change or padding is added",
                  because=lambda: diagnosis.diagnose_output(impl, q, k2, v2, allowed2))


def check_fully_masked_row(impl: Implementation, case: dict) -> None:
    """A query whose keys are all masked gets a finite output that reads nothing (or, declared, the
    uniform average), with finite gradients, the intermediate ones included (anomaly mode)."""
    layout, dtype = case["layout"], dtype_of(case)
    allowed = mask_of(case)
    q, k, v = (t.requires_grad_() for t in qkv(layout, case["seed"], dtype))
    dead = ~live_rows(allowed, (*layout[:3], layout[3]))
    because = lambda: diagnosis.diagnose_fully_masked(impl, *(t.detach() for t in (q, k, v)), allowed)  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "anomaly detection has been enabled"
            with torch.autograd.detect_anomaly(check_nan=True):
                out, _ = impl(q, k, v, allowed)
                if not out.isfinite().all():
                    fail(f"{case['dtype']}: non-finite outputs for a query that sees no key", because)
                out.float().square().sum().backward()
    except PropertyFailure:
        raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:120]
        if "nan values" in first:  # autograd's anomaly mode: a backward step produced NaN
            fail(f"{case['dtype']}: NaN in the backward pass for a query that sees no key ({first}): a -inf fill "
                 f"gives NaN gradients through the empty row even when the forward output is repaired afterwards "
                 f"(nan_to_num, masked_fill); zero such rows' scores or weights before the softmax's backward sees them")
        fail(f"{case['dtype']}: {type(exc).__name__} for a query that sees no key ({first})", because)
    for name, t in zip("qkv", (q, k, v)):
        if t.grad is None or not t.grad.isfinite().all():
            fail(f"{case['dtype']}: non-finite gradient with respect to {name}")
    out = out.detach()
    if impl.fully_masked_convention == "uniform":
        uniform = v.detach().double().mean(-2, keepdim=True).expand_as(out)
        tol = BY_DTYPE[dtype]
        _assert_close(out[dead], uniform[dead].to(dtype), "declared convention 'uniform', but an empty row is not "
                      "the average of the values", tol=tol)
        return
    with torch.no_grad():
        other_k, other_v = gaussian(k.shape, case["seed"] + 5, dtype), gaussian(v.shape, case["seed"] + 6, dtype)
        moved, _ = impl(q.detach(), other_k, other_v, allowed)
    if not torch.equal(moved[dead], out[dead]):
        fail(f"{case['dtype']}: a query that sees no key reads the keys/values", because)


def check_low_precision_fill(impl: Implementation, case: dict) -> None:
    """In float16 and bfloat16 masked weights are exactly 0 (never NaN) and outputs match float64
    attention on the same rounded inputs within the dtype's tolerance."""
    layout, dtype = case["layout"], dtype_of(case)
    allowed = mask_of(case)
    q, k, v = qkv(layout, case["seed"], dtype)
    try:
        out, returned = impl(q, k, v, allowed)
    except RuntimeError as exc:
        fail(f"{case['dtype']}: {type(exc).__name__} ({str(exc).strip().splitlines()[0][:120]}); a mask fill that "
             f"does not fit in {case['dtype']} (such as -1e9)? fill with torch.finfo(dtype).min or -inf")
    blocked = ~allowed.expand(*layout[:3], layout[3])
    for source, weights in [("read from the outputs", attention_weights(impl, q, k, allowed))] + \
            [("returned", returned)] * (returned is not None):
        if weights.dtype != dtype or weights.isnan().any():
            fail(f"{case['dtype']}: weights ({source}) are {weights.dtype} or NaN")
        if not (weights[blocked] == EXACT_ZERO).all():
            fail(f"{case['dtype']}: masked weights up to {weights[blocked].abs().max().item():.3g} ({source}): the fill "
                 f"is not small enough after the scale (e.g. -1e4), or the mask was added in low precision")
    expected, _ = reference_attention(q, k, v, allowed)
    _assert_close(out, expected, f"{case['dtype']} output differs from float64 attention on the same inputs",
                  tol=BY_DTYPE[dtype], because=lambda: diagnosis.diagnose_output(impl, *qkv(layout, case["seed"]), allowed))


def check_causal_future_invariance(impl: Implementation, case: dict) -> None:
    """With the lower-triangular mask, rewriting keys and values after position t leaves outputs up
    to t unchanged, while changing the value at t changes the output at t (the present is visible)."""
    B, H, n, _, d = layout = case["layout"]
    t, seed = case["t"], case["seed"]
    allowed = torch.ones(n, n, dtype=torch.bool).tril()[None, None]  # key j visible from query i iff j <= i
    q, k, v = qkv(layout, seed)
    out, _ = impl(q, k, v, allowed)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, t + 1:], v2[:, :, t + 1:] = (gaussian(k2[:, :, t + 1:].shape, seed + i, scale=10.0) for i in (3, 4))
    out2, _ = impl(q, k2, v2, allowed)
    _assert_close(out2[:, :, : t + 1], out[:, :, : t + 1], f"outputs up to position {t} depend on later keys/values",
                  because=lambda: diagnosis.diagnose_output(impl, q, k, v, allowed))
    v3 = v.clone()
    v3[:, :, t] += 1.0
    out3, _ = impl(q, k, v3, allowed)
    if not ((out3[:, :, t] - out[:, :, t]).abs().amax(-1) > VISIBLE).all():
        fail(f"the value at position {t} is invisible from position {t} (causal diagonal off by one?)")


def check_reshape_equals_loop(impl: Implementation, case: dict) -> None:
    """Attending with all H heads in one call gives, for each head, what a one-head call gives."""
    B, H, n_q, n_k, d = case["layout"]
    q, k, v = qkv(case["layout"], case["seed"])
    allowed = mask_of(case)
    out, _ = impl(q, k, v, allowed)
    for h in range(H):
        mask = None if allowed is None else allowed[:, h:h + 1] if allowed.shape[1] == H else allowed
        alone, _ = impl(q[:, h:h + 1], k[:, h:h + 1], v[:, h:h + 1], mask)
        _assert_close(out[:, h:h + 1], alone, f"head {h} of a {H}-head call differs from head {h} alone "
                      f"(heads mixed by a reshape without the transpose?)")


def check_no_nan(impl: Implementation, case: dict) -> None:
    """No NaN or inf in any dtype, with scores far beyond exp's range and a query whose keys are all masked."""
    layout, dtype = case["layout"], dtype_of(case)
    allowed = mask_of(case)
    scale = {torch.float64: 1000.0, torch.float32: 100.0}.get(dtype, 30.0)
    q, k, v = qkv(layout, case["seed"], dtype, scale)
    try:
        out, weights = impl(q, k, v, allowed)
    except RuntimeError as exc:
        fail(f"{case['dtype']}: {type(exc).__name__} ({str(exc).strip().splitlines()[0][:120]})",
             lambda: diagnosis.diagnose_fully_masked(impl, q, k, v, allowed))
    if not out.isfinite().all():
        bad = ~out.isfinite().all(-1)  # (B, H, S_q)
        dead = ~live_rows(allowed, (*layout[:3], layout[3]))
        if (bad & ~dead).any():
            fail(f"{case['dtype']}: non-finite outputs for queries that see keys (huge scores: a softmax without "
                 f"the max subtraction?)")
        fail(f"{case['dtype']}: non-finite outputs for a query that sees no key",
             lambda: diagnosis.diagnose_fully_masked(impl, q, k, v, allowed))
    if weights is not None and not weights.isfinite().all():
        fail(f"{case['dtype']}: non-finite returned weights")


def _causal_cases(row=None):
    layout = attention_layouts(self_attention=True)
    return layout.flatmap(lambda lay: st.builds(lambda seed, t: dict(layout=lay, allowed=None, seed=seed, t=t),
                                                seeds, st.integers(0, lay[2] - 1)))


PROPERTIES = {p.name: p for p in (
    Property("definition", "attention is softmax(Q K^T / sqrt(d)) V over the allowed keys",
             lambda row=None: _cases(optional_mask=True), check_definition),
    Property("convex-combination", "each output row is a convex combination of the visible value rows",
             lambda row=None: _cases(), check_convex_combination),
    Property("padding-zero-weight", "every masked key gets weight exactly zero",
             lambda row=None: _cases(), check_padding_zero_weight),
    Property("padding-invariance", "outputs ignore the contents of padded positions and extra padding",
             lambda row=None: st.builds(lambda c, extra: {**c, "extra": extra}, _cases(kinds=PADDING), st.integers(1, 3)),
             check_padding_invariance),
    Property("fully-masked-row", "a query that sees no key gets a finite output that reads nothing, with finite gradients",
             lambda row=None: _with_dtype(_cases(fully_masked_row=True), (torch.float32, *LOW_PRECISION)), check_fully_masked_row,
             examples=({**PADDED_WITH_EMPTY_EXAMPLE, "dtype": "float16"},)),
    Property("low-precision-fill", "in float16 and bfloat16 masked weights are exactly zero and outputs are accurate",
             lambda row=None: _with_dtype(_cases(), LOW_PRECISION), check_low_precision_fill),
    Property("causal-future-invariance", "with a causal mask, outputs ignore the future and see the present",
             _causal_cases, check_causal_future_invariance),
    Property("reshape-equals-loop", "all heads at once equal each head alone",
             lambda row=None: _cases(optional_mask=True), check_reshape_equals_loop),
    Property("no-nan", "no NaN or inf in any dtype, for huge scores and for queries that see no key",
             lambda row=None: _with_dtype(_cases(fully_masked_row=True), ALL_DTYPES), check_no_nan,
             examples=({**PADDED_WITH_EMPTY_EXAMPLE, "dtype": "float32"}, EMPTY_ROW_WITH_NEGATIVE_SCORES)),
)}
