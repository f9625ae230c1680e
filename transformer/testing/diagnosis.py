"""Say what is probably wrong when an attention property fails.

Two questions get an answer in words. For a wrong output: which simple alternative formula
reproduces it (a fitted scale c in softmax(c Q K^T) V, a flipped mask, a softmax over the query
axis, a mask applied after the softmax, a mask ignored or multiplied in); each alternative is
computed in float64 and accepted only when it matches the implementation's output to ``EXPLAINS``.
For a query that sees no key: a crash (typically a fill that does not fit in the dtype), NaN, or a
finite output that reads the masked values, which some libraries choose on purpose (then it is a
convention the row can declare, not a bug).
"""

from __future__ import annotations

import math

import torch

from .implementations import Implementation, reference_attention
from .strategies import live_rows
from .tolerances import EXPLAINS, FLOAT32_LEVEL, FLOAT64


def _matches(out: torch.Tensor, candidate: torch.Tensor, rows: torch.Tensor) -> bool:
    if not rows.any():
        return False
    got, want = out.double()[rows], candidate[rows]
    return bool(got.isfinite().all()) and float((got - want).abs().max()) <= EXPLAINS * (1 + float(want.abs().max()))


def _scores(q, k):
    # (B, H, S_q, d), (B, H, S_k, d) -> unscaled scores (B, H, S_q, S_k) in float64
    return torch.einsum("bhid,bhjd->bhij", q.double(), k.double())


def fit_scale(out, q, k, v, allowed) -> float | None:
    """The c for which softmax(c q k^T, masked) v is closest to ``out`` on rows that see a key
    (a log-spaced grid over [1e-3, 1e3], then golden-section refinement); None if nothing fits."""
    rows = live_rows(allowed, (*q.shape[:-1], k.shape[2]))
    if not rows.any() or not out[rows].isfinite().all():
        return None

    def residual(log_c: float) -> float:
        candidate, _ = reference_attention(q, k, v, allowed, scale=math.exp(log_c))
        return float((candidate[rows] - out.double()[rows]).abs().max())

    grid = [math.log(1e-3) + i * math.log(1e6) / 240 for i in range(241)]
    best = min(range(len(grid)), key=lambda i: residual(grid[i]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if residual(a) < residual(b):
            hi = b
        else:
            lo = a
    log_c = (lo + hi) / 2
    candidate, _ = reference_attention(q, k, v, allowed, scale=math.exp(log_c))
    return math.exp(log_c) if _matches(out, candidate, rows) else None


def name_scale(c: float, d: int, heads: int) -> str:
    """``c`` in words: the closest of the usual choices, or the number itself."""
    names = {"1": 1.0, "1/d": 1 / d, "1/sqrt(d)": 1 / math.sqrt(d), "sqrt(d)": math.sqrt(d),
             "1/sqrt(H d) (d_model instead of the head width)": 1 / math.sqrt(heads * d), "1/(H d)": 1 / (heads * d)}
    hits = [n for n, value in names.items() if abs(c - value) <= 1e-4 * value]
    return " = ".join(hits) if hits else f"{c:.4g}"


def _alternatives(q, k, v, allowed):
    """(words, output (B, H, S_q, d) float64, rows where it is defined) for each likely mistake."""
    shape = (*q.shape[:-1], k.shape[2])
    scores = _scores(q, k) / math.sqrt(q.shape[-1])
    v64 = v.double()
    if allowed is None:
        yield ("softmax over the query axis (dim -2) instead of the keys",
               torch.softmax(scores, dim=-2) @ v64, live_rows(None, shape))
        return
    full = allowed.expand(shape)
    flipped, _ = reference_attention(q, k, v, ~full)  # a row left without keys reads zeros
    yield "mask polarity flipped (True read as blocked)", flipped, live_rows(full, shape)
    over_queries = torch.softmax(scores.masked_fill(~full, -math.inf), dim=-2).nan_to_num(0.0)
    yield "softmax over the query axis (dim -2) instead of the keys", over_queries @ v64, live_rows(full, shape)
    after = torch.softmax(scores, dim=-1) * full
    yield ("mask applied after the softmax (masked weights zeroed, rows not renormalised)",
           after @ v64, live_rows(full, shape))
    ignored, _ = reference_attention(q, k, v, None)
    yield "mask ignored (every key visible)", ignored, live_rows(full, shape)
    yield ("multiplicative 0/1 mask (masked scores set to 0 instead of -inf)",
           torch.softmax(scores * full, dim=-1) @ v64, live_rows(full, shape))


def diagnose_output(impl: Implementation, q, k, v, allowed) -> str:
    """Words for an output that differs from softmax(q k^T / sqrt(d), masked) v (float64 inputs)."""
    B, H, n_q, d = q.shape
    try:
        out, _ = impl(q, k, v, allowed)
    except Exception as exc:  # noqa: BLE001 - the failure itself is reported elsewhere
        return f"raises {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    out = out.detach()
    rows = live_rows(allowed, (B, H, n_q, k.shape[2]))
    expected, _ = reference_attention(q, k, v, allowed)
    if rows.any() and out[rows].isfinite().all() and q.dtype == torch.float64:
        err = float((out.double()[rows] - expected[rows]).abs().max())
        if FLOAT64.atol < err <= FLOAT32_LEVEL * (1 + float(expected[rows].abs().max())):
            return (f"agrees with softmax(Q K^T / sqrt(d)) V only to about float32 precision (largest difference "
                    f"{err:.2g} for float64 inputs): part of the computation, typically the softmax, runs in float32")
    if _matches(out, expected, rows):
        return "the output matches softmax(Q K^T / sqrt(d)) V; the difference is elsewhere (weights or other rows)"
    if not out[rows].isfinite().all():
        return "non-finite outputs for queries that see keys"
    c = fit_scale(out, q, k, v, allowed)
    if c is not None:
        return (f"scores scaled by {name_scale(c, d, H)}, expected 1/sqrt(d) (fitted c = {c:.4g} in "
                f"softmax(c Q K^T) V; 1/sqrt(d) = {1 / math.sqrt(d):.4g} at d = {d})")
    explained = [words for words, candidate, where in _alternatives(q, k, v, allowed) if _matches(out, candidate, where)]
    if explained:  # on some inputs two mistakes give the same output: name every one that fits
        return " or ".join(explained)
    diff = (out.double() - expected).abs().masked_fill(~rows[..., None], 0)
    b, h, i, _ = (int(x) for x in (diff == diff.max()).nonzero()[0])
    return (f"no simple explanation (scale, mask polarity, softmax axis, mask after softmax, mask ignored): "
            f"largest difference {float(diff.max()):.3g} at example {b}, head {h}, query {i}")


def diagnose_fully_masked(impl: Implementation, q, k, v, allowed) -> str:
    """Words for what an implementation does with queries that see no key, in q's dtype."""
    dtype = str(q.dtype).removeprefix("torch.")
    shape = (*q.shape[:-1], k.shape[2])
    dead = ~live_rows(allowed, shape)
    try:
        out, _ = impl(q, k, v, allowed)
    except Exception as exc:  # noqa: BLE001
        message = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        in_float32 = _finite_in_float32(impl, q, k, v, allowed)
        return (f"crashes in {dtype} ({type(exc).__name__}: {message}); in float32 it {in_float32}. A mask fill that "
                f"does not fit in {dtype} (such as -1e9): fill with torch.finfo(dtype).min, or -inf with the weights "
                f"of empty rows zeroed afterwards")
    out = out.detach()
    if not dead.any():
        return "every query sees a key here"
    if not out[dead].isfinite().all():
        in_float32 = _finite_in_float32(impl, q, k, v, allowed)
        cause = ("a softmax over a row of -inf scores (-inf - (-inf) = NaN): zero the weights of rows without keys"
                 if in_float32 != "is finite" else
                 f"finite in float32, so the fill itself overflows in {dtype}: a finite fill such as finfo.min plus a "
                 f"negative score rounds to -inf, and a row of -inf gives NaN")
        return f"NaN (or inf) in {dtype} for a query that sees no key: {cause}"
    uniform = v.double().mean(-2, keepdim=True).expand(*shape[:-1], v.shape[-1])
    tol = 5e-2 if q.dtype in (torch.float16, torch.bfloat16) else 1e-5
    if torch.allclose(out.double()[dead], uniform[dead], rtol=tol, atol=tol):
        return ("finite, but reads the masked values: the output is the average of all values (uniform weights over "
                "masked keys, what a finite fill such as finfo.min gives). Some libraries choose this on purpose: if it "
                "is your convention, declare it with attend.conventions = {'fully-masked-row': 'uniform'}")
    if torch.equal(out[dead], torch.zeros_like(out[dead])):
        return "zero output, as required; the failure is in the gradients or the other rows"
    return "finite, but depends on the masked keys or values (neither zeros nor the uniform average)"


def _finite_in_float32(impl, q, k, v, allowed) -> str:
    try:
        out, _ = impl(q.float(), k.float(), v.float(), allowed)
    except Exception as exc:  # noqa: BLE001
        return f"crashes too ({type(exc).__name__})"
    return "is finite" if out.isfinite().all() else "is not finite either"
