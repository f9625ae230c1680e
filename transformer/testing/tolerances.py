"""Named tolerances of the conformance properties.

Exact properties run in float64: two routes to the same value differ by round-off only, a few
thousand ulps of 1.0 at the sizes drawn, while a real defect moves results by 1e-3 or more.
Low-precision runs are compared against float64 on the same rounded inputs, within a small multiple
of the dtype's machine epsilon.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tol(Mapping):
    """A relative and an absolute tolerance; ``assert_close(a, b, **FLOAT64)`` passes both."""

    rtol: float
    atol: float

    def __getitem__(self, key: str) -> float:
        if key not in ("rtol", "atol"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(("rtol", "atol"))

    def __len__(self) -> int:
        return 2


#: Two float64 routes to the same value (different summation order, fused vs explicit paths).
FLOAT64 = Tol(rtol=1e-10, atol=1e-12)
#: A float64 quantity that went through whole layer stacks (models, not single attention calls).
FLOAT64_DEEP = Tol(rtol=1e-9, atol=1e-10)
#: A masked weight must be exactly zero: no slack at all.
EXACT_ZERO = 0.0
BY_DTYPE = {
    torch.float64: FLOAT64,
    torch.float32: Tol(rtol=1e-5, atol=1e-6),
    torch.float16: Tol(rtol=5e-3, atol=5e-3),   # eps 9.8e-4
    torch.bfloat16: Tol(rtol=4e-2, atol=4e-2),  # eps 7.8e-3
}
#: A diagnosis accepts an alternative formula when it reproduces the output this closely (float64):
#: far looser than round-off, far tighter than any difference between the alternatives.
EXPLAINS = 1e-7
#: A float64 result off by more than round-off but at most this (relative) was computed in float32
#: somewhere (float32's epsilon is 1.2e-7; a softmax and a product accumulate a few of them).
FLOAT32_LEVEL = 1e-5
#: An output change smaller than this does not count as "the present is visible".
VISIBLE = 1e-9
