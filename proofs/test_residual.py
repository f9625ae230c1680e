"""Derivation: the Jacobian of a residual block, and the identity path it gives a deep stack."""

from __future__ import annotations

import pytest
import sympy as sp
import torch

WIDTHS = range(1, 5)


@pytest.mark.claim("arch.residual-gradient", kind="proof")
def test_residual_block_jacobian_is_identity_plus_branch_jacobian(measure):
    r"""arch.residual-gradient: $\frac{\partial (x + F(x))}{\partial x} = I + J_F$ for any differentiable F,
    so through L blocks $\prod_l (I + J_l) = I + \sum_l J_l + \dots$ always contains the identity, while
    without residuals the product $J_L \cdots J_1$ has no identity term.

    Proved with undefined functions $F_i(x_1..x_d)$ for d = 1..4, and with non-commuting symbols for the
    product over L = 1..5 blocks. When every branch is small at init ($J_l = \epsilon$ scalar), the
    residual product tends to 1 as $\epsilon \to 0$ and the plain product to 0; for fixed $|\epsilon| < 1$
    the plain product vanishes geometrically with depth.
    """
    for width in WIDTHS:
        xs = sp.Matrix(sp.symbols(f"x_1:{width + 1}", real=True))
        branch = sp.Matrix([sp.Function(f"F_{i}")(*xs) for i in range(width)])
        block = xs + branch
        residual = block.jacobian(xs) - (sp.eye(width) + branch.jacobian(xs))
        assert residual == sp.zeros(width, width), width
    for depth in range(1, 6):
        jacobians = sp.symbols(f"J_1:{depth + 1}", commutative=False)
        with_residual = sp.expand(sp.Mul(*[1 + j for j in reversed(jacobians)]))
        without = sp.Mul(*reversed(jacobians))
        terms = sp.Add.make_args(with_residual)
        assert sp.Integer(1) in terms and len(terms) == 2**depth, depth          # identity + every sub-product
        assert without in terms and sp.Integer(1) not in sp.Add.make_args(sp.expand(without))
    eps, u = sp.Symbol("epsilon", positive=True), sp.Symbol("u", positive=True)
    L = sp.Symbol("L", positive=True, integer=True)
    assert sp.limit((1 + eps) ** 6, eps, 0) == 1 and sp.limit(eps**6, eps, 0) == 0
    assert sp.limit((1 / (1 + u)) ** L, L, sp.oo) == 0                          # 0 < epsilon = 1/(1+u) < 1
    measure("statement", r"\frac{\partial(x+F(x))}{\partial x} = I + J_F,\quad \prod_{l=1}^{L}(I+J_l) = I + "
            r"\sum_l J_l + \dots")


def test_autograd_jacobian_of_a_residual_block_is_identity_plus_branch():
    """Numeric tie: torch.autograd's Jacobian of x + tanh(W x) equals I + the branch's Jacobian (float64)."""
    torch.manual_seed(0)
    W = torch.randn(5, 5, dtype=torch.float64)
    x = torch.randn(5, dtype=torch.float64)
    branch = lambda v: torch.tanh(W @ v)  # noqa: E731
    full = torch.autograd.functional.jacobian(lambda v: v + branch(v), x)
    assert torch.allclose(full, torch.eye(5, dtype=torch.float64) + torch.autograd.functional.jacobian(branch, x),
                          rtol=0, atol=1e-14)
