"""Small exact tools the derivations share: expectation algebra for independent variables and checks.

``expect`` computes E[polynomial] for mutually independent random variables from their moments,
E[prod_v v^a_v] = prod_v E[v^a_v]. Moments are given per variable; ``centred`` gives a variable
with mean 0, a chosen variance and *unknown* higher moments (fresh symbols), so a result that
does not mention them holds for every distribution with those first two moments. This is the
"direct expectation algebra" used where ``sympy.stats`` would be slow (sums over many variables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp

Moments = Callable[[int], sp.Expr]


def centred(variance: sp.Expr, name: str) -> Moments:
    """Moments of a zero-mean variable with the given variance; E[v^k], k >= 3, stay unknown symbols."""
    def moment(k: int) -> sp.Expr:
        if k == 0:
            return sp.Integer(1)
        if k == 1:
            return sp.Integer(0)
        if k == 2:
            return variance
        return sp.Symbol(f"mu_{k}[{name}]", real=True)
    return moment


def unknown_moment_symbols(expr: sp.Expr) -> set[sp.Symbol]:
    """The unknown higher moments (from ``centred``) that ``expr`` still depends on."""
    return {s for s in expr.free_symbols if s.name.startswith("mu_")}


def expect(expr: sp.Expr, moments: Mapping[sp.Symbol, Moments]) -> sp.Expr:
    """E[expr] for a polynomial ``expr`` in the mutually independent variables ``moments`` maps.

    Other symbols in ``expr`` are constants (conditioning on them); coefficients must be rational.
    Exact: expands the polynomial (in a sparse polynomial ring, which is fast for many variables) and
    replaces each monomial by the product of the variables' moments.
    """
    variables = list(moments)
    constants = sorted(sp.sympify(expr).free_symbols - set(variables), key=str)
    ring, *_ = sp.ring(variables + constants, sp.QQ)
    poly = ring(sp.sympify(expr))
    laws = [moments[v] for v in variables]
    terms = []
    for monomial, coeff in poly.terms():
        factors = [sp.Rational(coeff.numerator, coeff.denominator)]
        for law, power in zip(laws, monomial[:len(variables)]):
            if power:
                factors.append(law(power))
        if any(f == 0 for f in factors):
            continue
        factors += [c**e for c, e in zip(constants, monomial[len(variables):]) if e]
        terms.append(sp.Mul(*factors))
    return sp.expand(sp.Add(*terms))


def variance(expr: sp.Expr, moments: Mapping[sp.Symbol, Moments]) -> sp.Expr:
    """Var[expr] = E[expr^2] - E[expr]^2 by ``expect``."""
    return sp.expand(expect(expr**2, moments) - expect(expr, moments) ** 2)


def is_zero(residual: sp.Expr) -> bool:
    """Exact test that a residual vanishes identically (expand, then simplify if needed)."""
    residual = sp.expand(residual)
    return residual == 0 or sp.simplify(residual) == 0


def numerator_has_nonnegative_coefficients(expr: sp.Expr, variables: list[sp.Symbol]) -> bool:
    """Sufficient test that a rational function of positive variables is >= 0.

    Brings ``expr`` over a common denominator; when the denominator is a product of powers of sums of
    positive terms (checked the same way) and the numerator, expanded in ``variables``, has only
    non-negative coefficients, the function is non-negative wherever the variables are positive.
    """
    numerator, denominator = sp.fraction(sp.together(sp.expand(expr)))
    def nonneg(poly_expr: sp.Expr) -> bool:
        poly = sp.Poly(sp.expand(poly_expr), *variables)
        return all(sp.sympify(c).is_nonnegative for c in poly.coeffs())
    return nonneg(numerator) and nonneg(denominator)
