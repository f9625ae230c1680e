"""A small ledger for the page's tests: the real catalogue, one passing test per claim, and records shaped
like the suite's own for every plot, so the page can be built and opened without rerunning the suite.

The numbers are inputs of the page's tests, not results: they are drawn from a seeded generator so that a
plot that ignored its records (drew constants) would not change when they do.
"""

from __future__ import annotations

import random

import matplotlib

matplotlib.use("Agg")
# In-process pytester runs drop the modules first imported inside them; the page's libraries are imported
# here, before any such run, so that plots drawn later in the session use the same matplotlib.
import matplotlib.pyplot  # noqa: E402, F401

import verification.plots  # noqa: E402, F401
import verification.site  # noqa: E402, F401
from verification.aggregate import TestRecord, build_ledger  # noqa: E402
from verification.catalogue import load_catalogue  # noqa: E402
from verification.records import make_record  # noqa: E402


def _grid(rng: random.Random, rows: int = 6, cols: int = 12) -> list[list[float]]:
    return [[round(rng.random(), 4) for _ in range(cols)] for _ in range(rows)]


def plot_records(seed: int = 0) -> dict[str, list[dict]]:
    """claim id -> measurement records (as ``measure`` makes them) for every plot of ``verification.plots``."""
    rng = random.Random(seed)
    u = rng.random
    rec = make_record
    flops_rows = [{"n": n, "d": d, "h": 2, "attention": 8 * d * d * n + 4 * d * n * n, "ffn": 16 * d * d * n}
                  for d in (16, 64) for n in (8, 32, 128, 512)]
    return {
        "attn.qk-variance": [rec("dot_variance", d * (1 + 0.05 * (u() - 0.5)), params={"d_k": d}, interval=[0.9 * d, 1.1 * d],
                                 confidence=0.99, details={"closed_form": d}) for d in (4, 32)]
                            + [rec("scaled_variance", 1 + 0.05 * (u() - 0.5), params={"d_k": d}, interval=[0.9, 1.1],
                                   confidence=0.99) for d in (4, 32)]
                            + [rec("statement", r"\operatorname{Var}[q\cdot k]=d_k,\ \frac{q\cdot k}{\sqrt{d_k}}")],
        "attn.softmax-saturation": [rec("softmax_saturation", {"max_weight": 1 - 0.5 / (1 + b), "jacobian_norm": u() / (1 + b)},
                                        params={"beta": b}) for b in (0.1, 1.0, 10.0, 100.0)],
        "attn.unscaled-vanishing-gradient": [rec("near_one_hot_fraction", v, params={"scores": s}, interval=[v / 2, (1 + v) / 2],
                                                 confidence=0.99)
                                             for s, v in (("scaled", u() / 10), ("unscaled", 0.5 + u() / 2))],
        "qk.no-projection-self-dominant": [rec("p_diagonal_argmax", p, params={"d": d}, interval=[p * 0.9, min(1.0, p * 1.1)],
                                               alpha=1e-7, power=0.999, alternative="P = 0.5 (no self-preference)")
                                           for d, p in ((1, 0.25), (4, 0.7), (16, 0.99))],
        "attn.complexity": [rec("core_flops", {f"n={n},d={d}": 4 * d * n * n for n in (64, 128, 256) for d in (256, 512)})],
        "arch.block-cost": [rec("flops", flops_rows)],
        "heads.specialise": [rec("mass_on_previous_token", _grid(rng)), rec("positional_heads", [[0, 2]])],
        "attn.sparse-rows": [rec("trained_entropy_per_head", _grid(rng))],
        "heads.prunable": [rec("ranking_agreement_least_important_first",
                               {str(k): 1 - k / 100 * u() for k in range(0, 72, 12)}),
                           rec("ranking_agreement_most_important_first", {str(k): 1 - k / 40 for k in (6, 12, 18)})],
        "attn.additive-vs-dot-large-dk": [rec("accuracy_difference", u() / 10,
                                              params={"d_k": d, "first": "additive", "second": "unscaled"},
                                              interval=[-0.1, 0.2], confidence=0.99,
                                              details={"median_accuracy": {"additive": 0.9, "scaled": 0.9 - u() / 10,
                                                                           "unscaled": 0.9 - d / 100}}) for d in (4, 16, 64)],
        "pe.long-range-decay": [rec("similarity_by_offset", {"offset": list(range(0, 64, 4)),
                                                             "dot": [256 / (1 + k * b / 1000) for k in range(0, 64, 4)]},
                                    params={"base": float(b), "d_model": 512}) for b in (100, 10000)],
        "pe.why-10000": [rec("by_base", {str(b): {"horizon": b ** 0.5 * (1 + u()), "longest_wavelength": 6.28 * b}
                                         for b in (10, 100, 1000, 10000)})],
        "tie.nearest-row-wins": [rec("fraction_of_rows_not_winning_their_own_logit_at_init",
                                     {"4": 0.98, "16": u() / 2, "64": 0.0})],
        "pe.preserves-token-identity": [rec("recovered_fraction_by_width", {"16": u() / 2, "32": 0.99, "64": 1.0})],
        "tie.shared-vocab-cost": [rec("generator_flops_by_vocab", {str(v): 2048 * v for v in (1000, 4000, 16000)})],
        "train.noam-schedule": [rec("noam_rate_curve", {"step": [1, 2000, 4000, 8000, 16000],
                                                        "lr": [(512 ** -0.5) * min(s ** -0.5, s * 4000 ** -1.5)
                                                               for s in (1, 2000, 4000, 8000, 16000)]},
                                    params={"d_model": 512, "warmup": 4000})],
    }


def fixture_ledger(seed: int = 0) -> dict:
    """The ledger of a pretend run in which one passing test backs every claim."""
    catalogue = load_catalogue()
    per_claim = plot_records(seed)
    records = {}
    for i, claim in enumerate(catalogue):
        nodeid = f"tests/test_spine.py::test_claim_{i}"
        record = TestRecord(nodeid, outcome="passed", duration=0.01)
        record.properties = [("claim", {"ids": [claim.id], "kind": claim.evidence[0], "path": "tests/test_spine.py",
                                        "lineno": 1})]
        record.properties += [("measure", r | {"claims": [claim.id], "path": "tests/test_spine.py", "lineno": 1})
                              for r in per_claim.get(claim.id, [])]
        records[nodeid] = record
    conformance = TestRecord("tests/test_spine.py::test_conformance", outcome="passed")
    conformance.properties = [("conformance", {"implementation": impl, "property": prop})
                              for impl in ("project", "torch-mha") for prop in ("padding-zero-weight", "causal")]
    records[conformance.nodeid] = conformance
    environment = {"generated_at": "2026-01-01T00:00:00+0000", "commit": None, "python": "3", "torch": None,
                   "hypothesis": None, "profile": "fixture", "seed": {"hypothesis": None}}
    return build_ledger(catalogue, records, seconds=1.0, environment=environment)
