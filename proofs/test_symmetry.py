"""Derivations: when query-key scores are symmetric, and when the diagonal of X X^T is each row's maximum."""

from __future__ import annotations

import pytest
import sympy as sp

from proofs import closed_forms as cf
from proofs._algebra import is_zero

SHAPES = ((2, 1, 1), (3, 2, 2), (3, 4, 2), (4, 3, 3))  # (tokens, d_model, d_k)


def symbolic_matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", real=True))


@pytest.mark.claim("qk.shared-projection-symmetric", kind="proof")
def test_shared_or_no_projection_gives_symmetric_scores(measure):
    r"""qk.shared-projection-symmetric: with $W_q = W_k = W$ (and a shared bias), $S = (XW+b)(XW+b)^\top$
    satisfies $S^\top = S$, i.e. score(i, j) = score(j, i); without projections $S = XX^\top$ likewise.

    Proved with matrix symbols ($(AA^\top)^\top = AA^\top$) and with explicit symbolic entries for
    several shapes; with distinct $W_q, W_k$ the residual $S - S^\top$ is a non-zero polynomial, so
    symmetry is not automatic. Only the scores are symmetric: softmax normalises rows, so the
    attention weights $A_{ij} = e^{S_{ij}}/Z_i$ and $A_{ji} = e^{S_{ij}}/Z_j$ differ when $Z_i \ne Z_j$.
    Reformer's shared-QK normalises keys ($k_j = q_j/\lVert q_j\rVert$), which gives
    $S_{ij}\lVert q_j\rVert = S_{ji}\lVert q_i\rVert$: symmetric only for equal norms (counterexample shown).
    """
    # General: for any matrix A (here A = X W, or X itself), A A^T is its own transpose.
    A = sp.MatrixSymbol("A", cf.n, cf.d_k)
    assert (A * A.T).T == A * A.T
    for tokens, width, head in SHAPES:
        X, W = symbolic_matrix("x", tokens, width), symbolic_matrix("w", width, head)
        b = sp.ones(tokens, 1) * symbolic_matrix("b", 1, head)
        shared = (X * W + b) * (X * W + b).T
        no_projection = X * X.T
        assert (shared - shared.T).applyfunc(sp.expand) == sp.zeros(tokens, tokens), (tokens, width, head)
        assert (no_projection - no_projection.T).applyfunc(sp.expand) == sp.zeros(tokens, tokens)
        # Distinct W_q, W_k: S - S^T = X (W_q W_k^T - W_k W_q^T) X^T, not identically zero once d_model >= 2
        # (for d_model = 1, W_q W_k^T is a scalar and even separate projections give symmetric scores).
        separate = (X * W) * (X * symbolic_matrix("v", width, head)).T
        is_symmetric = (separate - separate.T).applyfunc(sp.expand) == sp.zeros(tokens, tokens)
        assert is_symmetric == (width == 1), (tokens, width, head)
    # Reformer's shared-QK also normalises the keys, k_j = q_j / |q_j|: then S_ij |q_j| = S_ji |q_i|,
    # so its scores are symmetric only between queries of equal norm (or orthogonal ones).
    qi, qj = symbolic_matrix("qi", 1, 3), symbolic_matrix("qj", 1, 3)
    norm = lambda v: sp.sqrt((v * v.T)[0, 0])  # noqa: E731
    s_ij, s_ji = (qi * qj.T)[0, 0] / norm(qj), (qj * qi.T)[0, 0] / norm(qi)
    assert sp.simplify(s_ij * norm(qj) - s_ji * norm(qi)) == 0
    q0, q1 = sp.Matrix([[1, 0]]), sp.Matrix([[2, 0]])
    reformer = sp.Matrix(2, 2, lambda i, j: ((q0, q1)[i] * (q0, q1)[j].T)[0, 0] / norm((q0, q1)[j]))
    assert reformer == sp.Matrix([[1, 1], [2, 2]]) and reformer != reformer.T
    # Rows of the softmax differ by their normalisers: A_ij / A_ji = Z_j / Z_i.
    s, z_i, z_j = sp.symbols("S_ij Z_i Z_j", positive=True)
    assert sp.simplify((sp.exp(s) / z_i) / (sp.exp(s) / z_j) - z_j / z_i) == 0
    measure("statement", r"W_q = W_k \Rightarrow S = (XW+b)(XW+b)^\top = S^\top;\ S = XX^\top = S^\top;\ "
            r"\text{Reformer } k_j = q_j/\lVert q_j\rVert: S_{ij}\lVert q_j\rVert = S_{ji}\lVert q_i\rVert")
    measure("reformer_counterexample", {"Q": [[1, 0], [2, 0]], "S": [[1, 1], [2, 2]]})


def cauchy_schwarz_gap(a: list[sp.Expr], b: list[sp.Expr]) -> sp.Expr:
    """|a|^2 - a.b, the amount by which a diagonal entry of X X^T beats an off-diagonal one."""
    return sp.Add(*(ai * ai for ai in a)) - sp.Add(*(ai * bi for ai, bi in zip(a, b)))


@pytest.mark.claim("qk.diagonal-max-counterexample", kind="proof")
def test_diagonal_of_gram_matrix_is_row_max_under_equal_norms_only(measure):
    r"""qk.diagonal-max-counterexample: for $S = XX^\top$,
    $S_{ii} - S_{ij} = |x_i|^2 - x_i\cdot x_j = \tfrac12|x_i - x_j|^2 + \tfrac12(|x_i|^2 - |x_j|^2)$.

    With equal norms the second term vanishes, so $S_{ii} \ge S_{ij}$ (the diagonal is a row maximum,
    strictly unless $x_j = x_i$); LayerNorm without affine gives every row squared norm exactly d,
    so it holds right after such a LayerNorm. With unequal norms it fails: X = [[1, 0], [2, 0]]
    gives row 0 = [1, 2]. The identity is proved per coordinate (general d) and summed for d = 1..8;
    the LayerNorm norm is proved for a symbolic width and checked in full for d = 2..6.
    """
    a, b = sp.symbols("a b", real=True)
    # Per coordinate: a^2 - a b = (a - b)^2 / 2 + (a^2 - b^2) / 2; summing over coordinates gives the identity.
    assert is_zero(a * a - a * b - ((a - b) ** 2 / 2 + (a**2 - b**2) / 2))
    for width in range(1, 9):
        xs, ys = sp.symbols(f"x_1:{width + 1}", real=True), sp.symbols(f"y_1:{width + 1}", real=True)
        half_distance = sp.Add(*((u - v) ** 2 for u, v in zip(xs, ys))) / 2
        half_norm_gap = (sp.Add(*(u * u for u in xs)) - sp.Add(*(v * v for v in ys))) / 2
        assert is_zero(cauchy_schwarz_gap(list(xs), list(ys)) - half_distance - half_norm_gap), width
        # Under equal norms the gap is a sum of squares: non-negative, zero only when x = y.
        equal_norms = cauchy_schwarz_gap(list(xs), list(ys)) - half_norm_gap
        assert is_zero(equal_norms - half_distance) and half_distance.is_nonnegative
    # LayerNorm (no affine, eps -> 0): y = (x - mean) / std with std^2 = sum (x - mean)^2 / d, so |y|^2 = d.
    centred_sq = sp.Symbol("Q", positive=True)      # sum_i (x_i - mean)^2, positive unless x is constant
    assert sp.simplify(centred_sq / (centred_sq / cf.d_model)) == cf.d_model
    for width in range(2, 7):
        xs = sp.symbols(f"x_1:{width + 1}", real=True)
        mean = sp.Add(*xs) / width
        var = sp.Add(*((u - mean) ** 2 for u in xs)) / width
        assert sp.simplify(sp.Add(*((u - mean) ** 2 / var for u in xs)) - width) == 0, width
    # Counterexample with unequal norms.
    X = sp.Matrix([[1, 0], [2, 0]])
    S = X * X.T
    assert S[0, 1] > S[0, 0], f"row 0 of X X^T = {list(S.row(0))}"
    measure("statement", r"S_{ii}-S_{ij} = \tfrac12\lVert x_i-x_j\rVert^2 + \tfrac12(\lVert x_i\rVert^2"
            r"-\lVert x_j\rVert^2) \ge 0 \text{ if } \lVert x_i\rVert=\lVert x_j\rVert")
    measure("counterexample", {"X": [[1, 0], [2, 0]], "row_0_of_XXt": [int(v) for v in S.row(0)]})
