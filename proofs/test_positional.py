"""Derivations: embedding scale, and what sinusoidal and rotary position codes encode about offsets.

Sinusoidal code (section 3.5): PE(pos, 2i) = sin(pos w_i), PE(pos, 2i+1) = cos(pos w_i), with
w_i = base^(-2i/d). The identities hold for any frequencies, so they are proved with free symbols
w_i > 0, per pair in general and for whole codes of width d = 2..8.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from sympy import stats

from proofs import closed_forms as cf
from proofs._algebra import is_zero

WIDTHS = range(2, 9, 2)
pos, k, m = sp.symbols("pos k m", real=True)


def frequencies(width: int) -> list[sp.Symbol]:
    return list(sp.symbols(f"omega_0:{width // 2}", positive=True))


def sinusoid(position: sp.Expr, omegas: list[sp.Symbol]) -> sp.Matrix:
    """The code as a column: (sin(p w_0), cos(p w_0), sin(p w_1), cos(p w_1), ...)."""
    return sp.Matrix([f(position * w) for w in omegas for f in (sp.sin, sp.cos)])


def block_rotation(angles: list[sp.Expr], sign: int) -> sp.Matrix:
    """Block-diagonal 2x2 rotations; sign +1: [[c, s], [-s, c]] (sinusoid order), -1: [[c, -s], [s, c]] (RoPE)."""
    return sp.diag(*[sp.Matrix([[sp.cos(a), sign * sp.sin(a)], [-sign * sp.sin(a), sp.cos(a)]]) for a in angles])


def trig_zero(expr: sp.Expr) -> bool:
    """Exact test that a trigonometric residual vanishes: expand sums of angles, then simplify."""
    expanded = sp.expand(expr, trig=True)
    return expanded == 0 or sp.simplify(expanded) == 0


@pytest.mark.claim("embed.sqrt-d-scaling", kind="proof")
def test_embeddings_of_variance_one_over_d_have_unit_variance_after_sqrt_d(measure):
    r"""embed.sqrt-d-scaling: $\operatorname{Var}[\sqrt{d}\,e] = d\sigma_e^2$, which is 1 for $\sigma_e^2 = 1/d$;
    each sinusoidal code has $|PE(pos)|^2 = d/2$, mean square 1/2 per coordinate: the same scale.

    Premise check: Keras's default uniform(-0.05, 0.05) has variance 1/1200, so the scaled variance is
    d/1200 (0.43 at d = 512; 1 only at d = 1200); PyTorch's default N(0, 1) embedding gives d.
    sympy.stats computes each variance; the code norm is a sum of sin^2 + cos^2 = 1 over d/2 pairs.
    """
    d = cf.d_model
    e = stats.Normal("e", 0, sp.sqrt(cf.entry_var))
    scaled = sp.simplify(stats.variance(sp.sqrt(d) * e))
    assert is_zero(scaled - cf.SCALED_EMBEDDING_VARIANCE), f"Var[sqrt(d) e] = {scaled}"
    assert sp.simplify(stats.variance(sp.sqrt(d) * stats.Normal("e1", 0, 1 / sp.sqrt(d)))) == 1
    keras = stats.variance(stats.Uniform("u", -sp.Rational(1, 20), sp.Rational(1, 20)))
    assert keras == cf.KERAS_UNIFORM_VARIANCE == sp.Rational(1, 1200)
    keras_scaled = cf.SCALED_EMBEDDING_VARIANCE.subs(cf.entry_var, keras)
    assert sp.solve(sp.Eq(keras_scaled, 1), d) == [1200] and keras_scaled.subs(d, 512) == sp.Rational(32, 75)
    assert cf.SCALED_EMBEDDING_VARIANCE.subs(cf.entry_var, 1) == d              # N(0, 1) default
    # The code: one sin^2 + cos^2 = 1 per pair, d/2 pairs.
    w = sp.Symbol("omega", positive=True)
    assert sp.trigsimp(sp.sin(pos * w) ** 2 + sp.cos(pos * w) ** 2) == 1
    i = sp.Symbol("i", integer=True, nonnegative=True)
    assert is_zero(sp.Sum(1, (i, 0, d / 2 - 1)).doit() - cf.SINUSOID_SQUARED_NORM)
    for width in WIDTHS:
        code = sinusoid(pos, frequencies(width))
        assert sp.trigsimp((code.T * code)[0, 0]) == cf.SINUSOID_SQUARED_NORM.subs(d, width)
    measure("statement", r"\operatorname{Var}[\sqrt{d}\,e] = " + sp.latex(cf.SCALED_EMBEDDING_VARIANCE)
            + r" = 1 \text{ at } \sigma_e^2 = 1/d;\ \lVert PE\rVert^2 = d/2;\ \text{Keras } U(\pm0.05): d/1200")


@pytest.mark.claim("pe.relative-by-rotation", kind="proof")
def test_shifting_the_sinusoid_by_k_is_a_rotation_independent_of_position(measure):
    r"""pe.relative-by-rotation: $PE(pos+k) = R_k\,PE(pos)$ with
    $R_k = \operatorname{diag}_i\begin{pmatrix}\cos k\omega_i & \sin k\omega_i\\
    -\sin k\omega_i & \cos k\omega_i\end{pmatrix}$,
    orthogonal and free of pos. Angle-addition formulas per pair (general), whole codes for d = 2..8.
    """
    w = sp.Symbol("omega", positive=True)
    pair = sinusoid(pos + k, [w]) - block_rotation([k * w], +1) * sinusoid(pos, [w])
    assert all(trig_zero(entry) for entry in pair)
    for width in WIDTHS:
        omegas = frequencies(width)
        R = block_rotation([k * wi for wi in omegas], +1)
        assert pos not in R.free_symbols
        residual = sinusoid(pos + k, omegas) - R * sinusoid(pos, omegas)
        assert all(trig_zero(entry) for entry in residual), width
        assert (R.T * R).applyfunc(sp.trigsimp) == sp.eye(width), "R_k is orthogonal"
    measure("statement", r"PE(pos+k) = R_k\,PE(pos),\ R_k = \bigoplus_i \begin{pmatrix}\cos k\omega_i & "
            r"\sin k\omega_i\\ -\sin k\omega_i & \cos k\omega_i\end{pmatrix}")


@pytest.mark.claim("pe.dot-depends-on-offset", kind="proof")
def test_sinusoid_inner_product_depends_only_on_the_offset_and_is_even(measure):
    r"""pe.dot-depends-on-offset: $\langle PE(m), PE(n)\rangle = \sum_i \cos((m-n)\omega_i)$, a function of
    $m-n$ alone and even in it, so it cannot tell whether n is before or after m. Per pair in general,
    whole codes for d = 2..8.
    """
    n_pos = sp.Symbol("n", real=True)
    for width in WIDTHS:
        omegas = frequencies(width)
        dot = (sinusoid(m, omegas).T * sinusoid(n_pos, omegas))[0, 0]
        offset_form = sp.Add(*(sp.cos((m - n_pos) * wi) for wi in omegas))
        assert trig_zero(dot - offset_form), width
        # Only the offset: with m = n + k the derivative in n vanishes; even: f(k) = f(-k).
        shifted = sp.expand(dot.subs(m, n_pos + k), trig=True)
        assert sp.simplify(sp.diff(shifted, n_pos)) == 0
        f = offset_form.subs(m, n_pos + k)
        assert is_zero(f - f.subs(k, -k))
    measure("statement", r"\langle PE(m), PE(n)\rangle = \sum_{i} \cos\big((m-n)\,\omega_i\big)")


@pytest.mark.claim("pe.rope-relative", kind="proof")
def test_rotary_inner_product_depends_only_on_the_offset(measure):
    r"""pe.rope-relative: with $\mathrm{RoPE}(x, m) = R(m\theta)x$ (pairs rotated by $m\theta_i$),
    $\langle R(m\theta)q, R(n\theta)k\rangle = q^\top R((n-m)\theta)\,k$, since $R(a)^\top R(b) = R(b-a)$.

    It depends on $m-n$ only, but unlike the sinusoid's inner product it is not even: the
    odd part $\sum_i (q_{2i}k_{2i+1} - q_{2i+1}k_{2i})\sin((m-n)\theta_i)$ keeps the direction.
    Per pair in general, whole vectors for d_k = 2..8.
    """
    n_pos = sp.Symbol("n", real=True)
    for width in WIDTHS:
        thetas = list(sp.symbols(f"theta_0:{width // 2}", positive=True))
        q = sp.Matrix(sp.symbols(f"q_0:{width}", real=True))
        key = sp.Matrix(sp.symbols(f"k_0:{width}", real=True))
        def rotate(position, thetas=thetas):
            return block_rotation([position * t for t in thetas], -1)

        score = ((rotate(m) * q).T * (rotate(n_pos) * key))[0, 0]
        relative = (q.T * rotate(n_pos - m) * key)[0, 0]
        assert trig_zero(score - relative), width
        shifted = sp.expand(score.subs(m, n_pos + k), trig=True)
        assert sp.simplify(sp.diff(shifted, n_pos)) == 0
        # The odd part in the offset k = m - n, exactly, and non-zero (value 1 at q = e_0, k = e_1, k theta_0 = pi/2).
        odd_part = (relative.subs(m, n_pos + k) - relative.subs(m, n_pos - k)) / 2
        claimed_odd = sp.Add(*(sp.sin(k * t) * (q[2 * i] * key[2 * i + 1] - q[2 * i + 1] * key[2 * i])
                               for i, t in enumerate(thetas)))
        assert trig_zero(odd_part - claimed_odd), width
        unit = {**{v: 0 for v in (*q, *key)}, q[0]: 1, key[1]: 1, thetas[0]: sp.pi / (2 * k)}
        assert sp.simplify(claimed_odd.subs(unit)) == 1, "the rotary score keeps the direction of the offset"
    measure("statement", r"\langle R(m\theta)q,\ R(n\theta)k\rangle = q^\top R\big((n-m)\theta\big)k")


def test_numeric_sinusoid_matches_the_derived_rotation_and_offset_dot():
    """Numeric tie: float64 codes with cf.sinusoid_frequencies obey the rotation, the dot and the norm."""
    width, base = 16, 10000.0
    omegas = torch.tensor(cf.sinusoid_frequencies(width, base), dtype=torch.float64)

    def code(position: float) -> torch.Tensor:
        angles = position * omegas
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten()

    for position, offset in ((0.0, 3.0), (17.0, -5.0), (250.0, 40.0)):
        c, s = torch.cos(offset * omegas), torch.sin(offset * omegas)
        blocks = [torch.tensor([[ci, si], [-si, ci]], dtype=torch.float64) for ci, si in zip(c, s)]
        rotated = torch.block_diag(*blocks) @ code(position)
        assert torch.allclose(rotated, code(position + offset), rtol=0, atol=1e-12)
        dot = float(code(position) @ code(position + offset))
        assert math.isclose(dot, cf.sinusoid_dot(offset, width, base), rel_tol=0, abs_tol=1e-12)
        assert math.isclose(float(code(position) @ code(position)), cf.sinusoid_squared_norm(width), abs_tol=1e-12)
