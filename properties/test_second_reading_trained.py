"""Sparse heads, positional heads and pruned heads, in a constructed map and in all-MiniLM-L6-v2.

A row of attention can be sparse (nearly one-hot) while the whole (n, n) map has full rank: sparsity
is about rows, rank about how many different keys the rows pick. A permutation-like map is both sparse
and full-rank; a map whose rows all pick the same key is sparse and rank one; the uniform map is dense
and rank one. The pretrained model has heads of both sparse kinds. Removing a head is then compared
with removing as many parameters elsewhere, to see whether the parameter count explains the change.
Measurements are float32, computed once per run (`properties.second_reading_fixtures`).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from properties._cache import computed_once
from properties.bert_experiments import (
    ATTENTION_SENTENCES,
    attention_measurements,
    head_measurements,
    minilm_identity,
    offline,
)
from properties.second_reading_fixtures import (
    CONTROL_DRAWS,
    RANK_SENTENCES,
    control_measurements,
    effective_rank,
    rank_measurements,
)
from properties.strategies import seeds
from properties.tolerances import FALSE_ALARM_RATE, FLOAT64

offline()
SPARSEST = 6  # heads examined, in decreasing order of mean largest row weight
SPARSE = 0.7  # a head is sparse when its rows put on average more than this on their largest key


@pytest.fixture(scope="session")
def ranks(request):
    return computed_once(request.config, "minilm-head-ranks", rank_measurements, extra=minilm_identity())


@pytest.fixture(scope="session")
def controls(request):
    return computed_once(request.config, "minilm-pruning-controls", control_measurements, extra=minilm_identity())


@pytest.fixture(scope="session")
def attention(request):
    return computed_once(request.config, "minilm-attention", attention_measurements, extra=minilm_identity())


@pytest.fixture(scope="session")
def heads(request):
    return computed_once(request.config, "minilm-heads", head_measurements, extra=minilm_identity())


# ---------------------------------------------------------------------------------------------------
# heads.sparse-not-low-rank
# ---------------------------------------------------------------------------------------------------

def permutation_like_map(n: int, eps: float, seed: int) -> torch.Tensor:
    """(1 - eps) P + (eps / n) 1 1^T for a random permutation P: each row puts 1 - eps + eps/n on one key,
    every key is picked by exactly one row. Shape (n, n), float64, rows sum to 1."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return (1 - eps) * torch.eye(n, dtype=torch.float64)[perm] + eps / n


@pytest.mark.claim("heads.sparse-not-low-rank", kind="counterexample")
@given(n=st.integers(2, 24), eps=st.floats(0.0, 0.5), seed=seeds)
def test_a_sparse_attention_map_can_have_full_rank(n, eps, seed):
    """Sparse rows, full rank: A = (1 - eps) P + (eps/n) 1 1^T has singular values 1 (on the ones
    vector) and 1 - eps (n - 1 times), so for eps < 1 it has rank n, and its best rank-r
    approximation (Eckart-Young) misses by sqrt(n - r) (1 - eps) in Frobenius norm: factorising it
    at low rank loses most of it, however sparse its rows are."""
    A = permutation_like_map(n, eps, seed)
    sigma = torch.linalg.svdvals(A)
    expected = torch.tensor([1.0] + [1 - eps] * (n - 1), dtype=torch.float64)
    torch.testing.assert_close(sigma, expected, rtol=FLOAT64.rtol, atol=1e3 * FLOAT64.atol)
    assert int(torch.linalg.matrix_rank(A)) == n
    assert (A.amax(-1) >= 1 - eps).all()


@pytest.mark.claim("heads.sparse-not-low-rank", kind="counterexample")
def test_constructed_sparse_map_against_dense_low_rank_map(measure):
    """The pinned instance for the ledger: n = 16, eps = 0.05 (95% of every row on one key): effective
    rank and the share of the map a rank-n/4 factorisation keeps; the uniform map (every row spread
    evenly, as dense as a row can be) has rank one. Sparsity and rank are independent properties."""
    n, eps = 16, 0.05
    A = permutation_like_map(n, eps, 0)
    uniform = torch.full((n, n), 1.0 / n, dtype=torch.float64)
    sigma = torch.linalg.svdvals(A)
    r = n // 4
    kept = float((sigma[:r] ** 2).sum() / (sigma**2).sum())
    eff, _ = effective_rank(A)
    measure("constructed_row_max", float(A.amax(-1).min()), n=n, eps=eps)
    measure("constructed_rank", int(torch.linalg.matrix_rank(A)), n=n)
    measure("constructed_effective_rank", eff, n=n)
    measure("rank_quarter_energy_kept", kept, rank=r, n=n)
    measure("uniform_rank", int(torch.linalg.matrix_rank(uniform)), n=n)
    assert int(torch.linalg.matrix_rank(A)) == n and int(torch.linalg.matrix_rank(uniform)) == 1
    assert kept < 0.5, f"a rank-{r} factorisation keeps {kept:.3f} of the sparse map"
    assert abs(kept - (1 + (r - 1) * (1 - eps) ** 2) / (1 + (n - 1) * (1 - eps) ** 2)) < 1e-12


@pytest.mark.claim("heads.sparse-not-low-rank", kind="empirical")
def test_the_pretrained_model_has_sparse_heads_of_full_rank_and_sparse_heads_of_rank_one(ranks, measure):
    """On 32 template sentences, the 6 heads whose rows are most concentrated (mean largest weight): the
    sparsest (a previous-token head) needs most of its n singular directions (effective rank / n above
    1/2, 90% of its energy needs more than half of n), while the sparse heads that park their mass on
    [CLS] and [SEP] are nearly rank one (90% of the energy in a tenth of n or less). So sparse does not
    imply low rank; what decides the rank is whether the rows pick different keys."""
    n = ranks["n"].double()[:, None, None]  # (N, 1, 1)
    top1 = ranks["top1"].mean(0)  # (L, H)
    eff = (ranks["effective_rank"] / n).mean(0)
    r90 = (ranks["rank90"] / n).mean(0)
    prev, special = ranks["prev"].mean(0), ranks["special"].mean(0)
    order = top1.flatten().argsort(descending=True)[:SPARSEST].tolist()
    rows = [dict(layer=i // top1.shape[1], head=i % top1.shape[1], top1=round(float(top1.view(-1)[i]), 4),
                 effective_rank_over_n=round(float(eff.view(-1)[i]), 4), rank90_over_n=round(float(r90.view(-1)[i]), 4),
                 previous_token_mass=round(float(prev.view(-1)[i]), 4), cls_sep_mass=round(float(special.view(-1)[i]), 4))
            for i in order]
    measure("sparsest_heads", rows, sentences=RANK_SENTENCES, lengths=[int(ranks["n"].min()), int(ranks["n"].max())])
    full_rank = [r for r in rows if r["effective_rank_over_n"] > 0.5]
    sinks = [r for r in rows if r["cls_sep_mass"] > 0.5]
    assert full_rank, f"no sparse head of high rank among {rows}"
    assert sinks, f"no [CLS]/[SEP] head among the sparsest: {rows}"
    top = full_rank[0]
    measure("sparsest_full_rank_head_top1", top["top1"], layer=top["layer"], head=top["head"])
    measure("sparsest_full_rank_head_effective_rank", top["effective_rank_over_n"], unit="fraction of n")
    measure("sparsest_full_rank_head_rank90", top["rank90_over_n"], unit="fraction of n")
    measure("sink_heads_max_rank90", max(r["rank90_over_n"] for r in sinks), heads=len(sinks), unit="fraction of n")
    measure("sink_heads_min_top1", min(r["top1"] for r in sinks), heads=len(sinks))
    measure("sparse_heads", int((top1 > SPARSE).sum()), of=top1.numel(), threshold=SPARSE)
    assert top["rank90_over_n"] > 0.5 and max(r["rank90_over_n"] for r in sinks) < 0.1, rows


# ---------------------------------------------------------------------------------------------------
# heads.few-syntactic-heads (reference, with the suite's own count of positional heads)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("heads.few-syntactic-heads", kind="reference")
def test_few_of_the_pretrained_heads_are_positional(attention, measure):
    """The count the suite can make itself, on the 128 template sentences: heads whose rows put more
    than half their mass on the previous or on the next token, by point estimate, and by the interval
    rule of heads.specialise (Hoeffding intervals union-bounded over 72 heads x 2 offsets, a head counts
    when its whole interval is above 1/2), recorded as a description (it decides no claim). Syntactic
    and rare-word roles need annotated data and are cited. The count must be a minority of the heads."""
    n = ATTENTION_SENTENCES
    prev, nxt = attention["trained"]["prev"].mean(0), attention["trained"]["next"].mean(0)  # (L, H)
    half_width = math.sqrt(math.log(2 * 2 * prev.numel() / FALSE_ALARM_RATE) / (2 * n))
    certain = ((prev - half_width > 0.5) | (nxt - half_width > 0.5)).nonzero().tolist()
    estimate = (torch.maximum(prev, nxt) > 0.5).nonzero().tolist()
    measure("positional_head_count", len(certain), of=prev.numel(), heads=certain, half_width=half_width,
            confidence=1 - FALSE_ALARM_RATE, role="descriptive")
    measure("heads_over_half_on_a_neighbour_point_estimate", len(estimate), of=prev.numel(), heads=estimate,
            statistic="mean over sentences, no interval")
    assert 0 < len(estimate) < prev.numel() / 4, f"{len(estimate)} positional heads of {prev.numel()}"


# ---------------------------------------------------------------------------------------------------
# heads.pruning-loss-from-parameters
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("heads.pruning-loss-from-parameters", kind="empirical")
def test_removing_a_head_is_not_like_removing_as_many_parameters_elsewhere(heads, controls, measure):
    """If a head's removal hurt because of the parameters it takes away, removing as many parameters
    elsewhere would hurt about as much. Per head (72) the mean cosine shift of the 24 sentence
    embeddings, against 8 random removals of the same count (49,248 parameters): scattered weight
    entries, and 64 whole feed-forward units. The verdict follows the comparison: most heads move the
    output less than every control draw of the gentler control, and some (last-layer) heads more than
    every draw of the harsher one, so the count does not predict the change."""
    shift = heads["shift"].mean(-1)  # (L, H)
    scattered, units = controls["scattered"].mean(-1), controls["ffn_units"].mean(-1)  # (D,) each
    gentler, harsher = sorted((scattered, units), key=lambda c: float(c.median()))
    below = int((shift < gentler.min()).sum())
    above = (shift > harsher.max()).nonzero().tolist()
    measure("head_removal_median_shift", float(shift.median()), heads=shift.numel(),
            quartiles=[float(q) for q in shift.flatten().quantile(torch.tensor([0.25, 0.75]))])
    measure("scattered_removal_median_shift", float(scattered.median()), draws=CONTROL_DRAWS,
            range=[float(scattered.min()), float(scattered.max())], parameters=controls["head_params"])
    measure("ffn_unit_removal_median_shift", float(units.median()), draws=CONTROL_DRAWS,
            range=[float(units.min()), float(units.max())], units=controls["ffn_unit_count"])
    measure("heads_below_every_control_draw", below, of=shift.numel())
    measure("heads_above_every_control_draw", len(above), of=shift.numel(), heads=above)
    measure("head_params", controls["head_params"])
    assert below > shift.numel() / 2, f"only {below} heads cost less than every draw of the gentler control"
    assert above, "no head costs more than every draw of the harsher control"
