"""Positional information: what attention cannot see without it, and what the sinusoidal code is.

Without positions an encoder is permutation-equivariant: reordering the tokens only reorders the
outputs, so word order is invisible (in a decoder the causal mask alone carries it). The sinusoidal
code is bounded, moves by a fixed rotation when the position shifts by k, and its inner products
depend only on the offset and fade with distance on average; the base 10000 sets that horizon. A
learned table stops at its length; rotary scores and ALiBi biases depend only on relative positions.
The code is always read back from the model (what ``InputEmbedding`` adds, what attention computes),
never from a formula restated here.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import (
    gaussian,
    model_configs,
    non_identity_permutations,
    padded_token_batches,
    per_example_permutations,
    seeded_model,
    seeds,
)
from properties.tolerances import FLOAT64, FLOAT64_DEEP
from transformer import (
    ALiBi,
    InputEmbedding,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    TransformerConfig,
    sinusoidal_encoding,
)

MARGIN = 1e-6  # a real break of equivariance moves outputs by far more; round-off by far less


def added_code(d_model: int, positions: range, *, base: float = 10000.0, positional: str = "sinusoidal",
               max_len: int = 64) -> torch.Tensor:
    """The rows the model's InputEmbedding adds at the given (contiguous) positions, read back with a zero
    token table. Shape (len(positions), d_model), float64."""
    config = TransformerConfig.tiny(vocab_size=5, d_model=d_model, h=1, positional=positional, pe_base=base,
                                    max_len=max_len, pad_id=None)
    embed = InputEmbedding(config, 5).double().eval()
    with torch.no_grad():
        embed.token.lut.weight.zero_()
        ids = torch.zeros(1, len(positions), dtype=torch.long)
        return embed(ids, position_offset=positions.start)[0]



def _take(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Reorder positions per example: x (B, S, ...) and perm (B, S) -> x[b, perm[b]]."""
    index = perm.reshape(*perm.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


def _equivariance_gap(model, src, allowed, perm) -> torch.Tensor:
    """max |Enc(P X) - P Enc(X)| per example."""
    with torch.no_grad():
        permuted_first = model.encode(_take(src, perm), _take(allowed, perm))
        permuted_after = _take(model.encode(src, allowed), perm)
    return (permuted_first - permuted_after).abs().flatten(1).amax(dim=1)


# ---------------------------------------------------------------------------------------------------
# Equivariance
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("pe.permutation-equivariance", kind="exact")
@given(config=model_configs(positional=("none",)), batch=st.integers(1, 3), length=st.integers(1, 7),
       seed=seeds, data=st.data())
def test_without_positions_the_encoder_is_permutation_equivariant(config, batch, length, seed, data):
    """Enc(P X) = P Enc(X) for per-example permutations P of tokens and padding mask, any depth and heads."""
    src, allowed = data.draw(padded_token_batches(vocab_size=config.src_vocab_size, batch=batch,
                                                  length=length, seed=seed))
    perm = data.draw(per_example_permutations(batch=batch, length=length))
    model = seeded_model(config, seed)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(_take(src, perm), _take(allowed, perm)),
                                   _take(model.encode(src, allowed), perm), **FLOAT64_DEEP)


@pytest.mark.claim("pe.breaks-equivariance", kind="exact")
@given(config=model_configs(positional=("sinusoidal", "learned")), batch=st.integers(1, 3),
       length=st.integers(2, 7), seed=seeds, data=st.data())
def test_absolute_codes_break_equivariance_for_every_permutation(config, batch, length, seed, data):
    """With an added absolute code, every non-identity permutation (even of equal tokens) changes the output."""
    perm = data.draw(non_identity_permutations(batch=batch, length=length))
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, length), generator=g)
    gap = _equivariance_gap(seeded_model(config, seed), src, torch.ones_like(src, dtype=torch.bool), perm)
    assert (gap > MARGIN).all(), f"permutations {perm.tolist()} left the output equivariant (gaps {gap.tolist()})"


@pytest.mark.claim("pe.breaks-equivariance", kind="exact")
@given(config=model_configs(positional=("rope", "alibi")), batch=st.integers(1, 3), length=st.integers(3, 7),
       seed=seeds)
def test_relative_codes_break_equivariance_for_a_swap_of_distinct_neighbours(config, batch, length, seed):
    """With rotary or ALiBi positions, swapping tokens 0 and 1 (distinct) of a length >= 3 input changes the output."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, length), generator=g)
    src[:, 1] = (src[:, 0] + 1 + src[:, 1] % (config.src_vocab_size - 1)) % config.src_vocab_size
    perm = torch.arange(length).repeat(batch, 1)
    perm[:, [0, 1]] = perm[:, [1, 0]]
    gap = _equivariance_gap(seeded_model(config, seed), src, torch.ones_like(src, dtype=torch.bool), perm)
    assert (gap > MARGIN).all(), f"swapping tokens 0 and 1 left the output equivariant (gaps {gap.tolist()})"


@pytest.mark.claim("pe.breaks-equivariance", kind="exact")
@given(config=model_configs(positional=("alibi",)), batch=st.integers(1, 3), length=st.integers(1, 7), seed=seeds)
def test_alibi_encoder_stays_equivariant_under_reversal(config, batch, length, seed):
    """ALiBi's bias depends on |i - j| only, so without a causal mask reversing the input reverses the output."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, length), generator=g)
    perm = torch.arange(length).flip(0).repeat(batch, 1)
    gap = _equivariance_gap(seeded_model(config, seed), src, torch.ones_like(src, dtype=torch.bool), perm)
    assert (gap <= FLOAT64_DEEP.atol + FLOAT64_DEEP.rtol * 10).all(), f"reversal changed an ALiBi encoder (gaps {gap.tolist()})"


@pytest.mark.claim("pe.breaks-equivariance", kind="counterexample")
def test_a_swap_of_two_tokens_breaks_equivariance_concrete_case(measure):
    """The tiny preset with sinusoidal positions: swapping the first two tokens is not a mere reordering."""
    src, perm = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 0, 2, 3]])
    gaps = {}
    for positional in ("sinusoidal", "learned", "rope", "alibi", "none"):
        config = TransformerConfig.tiny(vocab_size=11, positional=positional, pad_id=None)
        gaps[positional] = float(_equivariance_gap(seeded_model(config, 0), src, torch.ones_like(src, dtype=torch.bool), perm))
    measure("counterexample", {"src": src.tolist(), "permutation": perm.tolist(), "config": "tiny, seed 0",
                               "max_abs_gap_by_positional": gaps})
    assert all(gaps[k] > 1e-3 for k in ("sinusoidal", "learned", "rope", "alibi")), gaps
    assert gaps["none"] <= FLOAT64_DEEP.atol, gaps


def _decoder_gaps(model, src, tgt, perm, causal: bool):
    """max |Dec(P Y) - P Dec(Y)| per example, with or without the causal mask (positional none)."""
    with torch.no_grad():
        memory = model.encode(src)
        if causal:
            first, after = model.decode(_take(tgt, perm), memory), _take(model.decode(tgt, memory), perm)
        else:
            run = lambda t: model.decoder(model.tgt_embed(t), memory, None, None)  # noqa: E731
            first, after = run(_take(tgt, perm)), _take(run(tgt), perm)
    return (first - after).abs().flatten(1).amax(dim=1)


@pytest.mark.claim("pe.causal-mask-carries-order", kind="exact")
@given(config=model_configs(positional=("none",)), batch=st.integers(1, 3), src_len=st.integers(1, 7),
       tgt_len=st.integers(2, 7), seed=seeds, data=st.data())
def test_without_positions_the_causal_mask_alone_breaks_equivariance(config, batch, src_len, tgt_len, seed, data):
    """No positional code: the causal decoder is not equivariant under a swap of two distinct target tokens,
    while the same layers without the mask are equivariant under any permutation."""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g)
    tgt[:, 1] = (tgt[:, 0] + 1 + tgt[:, 1] % (config.tgt_vocab_size - 1)) % config.tgt_vocab_size
    swap = torch.arange(tgt_len).repeat(batch, 1)
    swap[:, [0, 1]] = swap[:, [1, 0]]
    causal = _decoder_gaps(model, src, tgt, swap, causal=True)
    assert (causal > MARGIN).all(), f"the causal decoder stayed equivariant under the swap (gaps {causal.tolist()})"
    any_perm = data.draw(per_example_permutations(batch=batch, length=tgt_len))
    unmasked = _decoder_gaps(model, src, tgt, any_perm, causal=False)
    assert (unmasked <= 10 * FLOAT64_DEEP.atol).all(), f"without the mask, gaps {unmasked.tolist()}"


@pytest.mark.claim("pe.causal-mask-carries-order", kind="counterexample")
def test_the_causal_mask_carries_order_concrete_case(measure):
    """Tiny preset, no positional code: swapping target tokens 0 and 1 changes the causal decoder's output."""
    config = TransformerConfig.tiny(vocab_size=11, positional="none", pad_id=None)
    model = seeded_model(config, 0)
    src, tgt, perm = torch.tensor([[3, 5, 7]]), torch.tensor([[1, 4, 9, 6]]), torch.tensor([[1, 0, 2, 3]])
    causal = float(_decoder_gaps(model, src, tgt, perm, causal=True))
    unmasked = float(_decoder_gaps(model, src, tgt, perm, causal=False))
    measure("counterexample", {"src": src.tolist(), "tgt": tgt.tolist(), "permutation": perm.tolist(),
                               "config": "tiny, positional none, seed 0", "max_abs_gap_causal": causal,
                               "max_abs_gap_without_mask": unmasked})
    assert causal > 1e-3 and unmasked <= FLOAT64_DEEP.atol, (causal, unmasked)


# ---------------------------------------------------------------------------------------------------
# The sinusoidal code itself
# ---------------------------------------------------------------------------------------------------

even_widths = st.integers(1, 32).map(lambda half: 2 * half)
bases = st.sampled_from([100.0, 10000.0, 100000.0])


@pytest.mark.claim("pe.sinusoid-shape", kind="exact")
@given(d_model=even_widths, base=bases, start=st.integers(0, 10_000), length=st.integers(1, 7))
def test_sinusoidal_code_is_bounded_has_norm_sqrt_half_d_and_geometric_wavelengths(d_model, base, start, length):
    """Entries in [-1, 1]; every row has squared norm d/2; pair i turns at rate base^(-2i/d) per position,
    so wavelengths run geometrically from 2 pi with ratio base^(2/d) (the longest is 2 pi base^(1 - 2/d))."""
    rows = added_code(d_model, range(start, start + length), base=base)  # (S, D)
    assert rows.abs().max() <= 1.0
    torch.testing.assert_close((rows ** 2).sum(dim=1), torch.full((length,), d_model / 2, dtype=torch.float64), **FLOAT64)
    first = added_code(d_model, range(0, 2), base=base)  # positions 0 and 1
    turn = torch.complex(first[1, 1::2], first[1, 0::2]) * torch.complex(first[0, 1::2], -first[0, 0::2])
    wavelengths = 2 * math.pi / turn.angle()  # (D/2,): angle per position is < 1 rad, so it is unambiguous
    expected = 2 * math.pi * base ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    torch.testing.assert_close(wavelengths, expected, **FLOAT64)


@pytest.mark.claim("pe.sinusoid-shape", kind="exact")
def test_the_longest_wavelength_at_the_paper_width_stays_below_base_times_2pi(measure):
    """d = 512, base 10000, read from the model's code: the slowest pair's wavelength is 2 pi base^(1 - 2/d),
    short of 2 pi base (the limit the progression only reaches as d grows)."""
    d_model, base = 512, 10000.0
    first = added_code(d_model, range(0, 2), base=base)  # positions 0 and 1
    turn = torch.complex(first[1, -1], first[1, -2]) * torch.complex(first[0, -1], -first[0, -2])
    longest = float(2 * math.pi / turn.angle())
    measure("longest_wavelength", longest / (2 * math.pi), params={"d_model": d_model, "base": base}, unit="2 pi positions")
    assert longest == pytest.approx(2 * math.pi * base ** (1 - 2 / d_model), rel=1e-9)
    assert longest < 2 * math.pi * base


def _rotation_blocks(d_model: int, k: int, base: float) -> torch.Tensor:
    """R_k: 2x2 blocks [[cos, sin], [-sin, cos]] of angle k * base^(-2i/d), acting on (sin, cos) pairs."""
    angle = k * base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (D/2, 2, 2)


@pytest.mark.claim("pe.relative-by-rotation", kind="exact")
@given(d_model=even_widths, base=bases, k=st.integers(-500, 2000), start=st.integers(0, 2000),
       length=st.integers(1, 7))
def test_code_at_pos_plus_k_is_a_fixed_rotation_of_the_code_at_pos(d_model, base, k, start, length):
    """PE(pos + k) = R_k PE(pos) for every pos, with R_k block-diagonal rotations that depend on k only."""
    start = max(start, -k)  # keep pos + k >= 0
    here = added_code(d_model, range(start, start + length), base=base).reshape(length, -1, 2)
    there = added_code(d_model, range(start + k, start + k + length), base=base).reshape(length, -1, 2)
    rotated = torch.einsum("iab,sib->sia", _rotation_blocks(d_model, k, base), here)
    torch.testing.assert_close(there, rotated, **FLOAT64)


@pytest.mark.claim("pe.dot-depends-on-offset", kind="exact")
@given(d_model=even_widths, base=bases, m=st.integers(0, 1000), n=st.integers(0, 1000), shift=st.integers(0, 1000))
def test_code_inner_product_depends_only_on_the_signed_offset_and_is_even(d_model, base, m, n, shift):
    """<PE(m + s), PE(n + s)> = <PE(m), PE(n)>, and <PE(p), PE(p + k)> = <PE(p), PE(p - k)>: only |m - n| counts."""
    lo, hi = min(m, n), max(m, n)
    codes = added_code(d_model, range(0, 2 * hi - lo + shift + 1), base=base)
    dot = lambda a, b: codes[a] @ codes[b]  # noqa: E731
    torch.testing.assert_close(dot(m + shift, n + shift), dot(m, n), **FLOAT64_DEEP)
    torch.testing.assert_close(dot(hi, hi + (hi - lo)), dot(hi, lo), **FLOAT64_DEEP)  # after == before


def _similarity_curve(d_model: int, n_positions: int, base: float = 10000.0) -> torch.Tensor:
    """f(k) = <PE(0), PE(k)> for k = 0 .. n_positions - 1, read from the model's code, in chunks."""
    origin = added_code(d_model, range(0, 1), base=base)[0]
    chunks = [added_code(d_model, range(s, min(s + 4096, n_positions)), base=base) @ origin
              for s in range(0, n_positions, 4096)]
    return torch.cat(chunks)


@pytest.mark.claim("pe.long-range-decay", kind="measured")
def test_code_similarity_peaks_at_zero_and_decays_on_average(measure):
    """d = 512, base 10000, offsets 0..8191: f(k) = <PE(0), PE(k)> has its unique maximum d/2 at k = 0 and its
    means over growing windows of offsets fall, from 189 near k = 1..16 to about 0 beyond 4096."""
    d_model, n = 512, 8192
    f = _similarity_curve(d_model, n)
    windows = [(1, 16), (16, 64), (64, 256), (256, 1024), (1024, 4096), (4096, 8192)]
    means = [float(f[a:b].mean()) for a, b in windows]
    rises = int((f[1:] > f[:-1]).sum())
    measure("peak", float(f[0]), closed_form=d_model / 2, max_off_peak=float(f[1:].max()))
    measure("window_means", dict(zip([f"{a}-{b}" for a, b in windows], means)), d_model=d_model, base=10000)
    measure("steps_where_f_rises", rises, out_of=n - 1)
    assert float(f[0]) == pytest.approx(d_model / 2, rel=FLOAT64.rtol) and bool((f[1:] < f[0]).all())
    assert all(a > b for a, b in zip(means, means[1:])), f"window means should fall: {means}"


@pytest.mark.claim("pe.long-range-decay", kind="measured")
def test_code_similarity_curves_peak_only_at_zero_for_every_base(measure):
    """d = 512, offsets 0..1024, bases 100, 1000, 10000: f(k) = <PE(0), PE(k)> stays below its peak d/2
    at every k > 0 (no offset repeats the code exactly). The curves up to 512 are recorded for the page."""
    d_model = 512
    for base in (100.0, 1000.0, 10000.0):
        f = _similarity_curve(d_model, 1025, base)
        offsets = list(range(0, 513))
        measure("similarity_by_offset", {"offset": offsets, "dot": [float(f[k]) for k in offsets]},
                params={"base": base, "d_model": d_model}, unit="dot product")
        assert float(f[0]) == pytest.approx(d_model / 2, rel=FLOAT64.rtol)
        assert bool((f[1:] < f[0] - 1e-9).all()), f"base {base}: an offset reaches the peak again"


@pytest.mark.claim("pe.long-range-decay", kind="counterexample")
def test_code_similarity_is_not_monotone_in_the_offset(measure):
    """Strict decay fails early: at d = 512, base 10000, f(44) > f(43), the first rise of the curve."""
    f = _similarity_curve(512, 64)
    rises = (f[1:] > f[:-1]).nonzero().flatten()
    k = int(rises[0])
    measure("counterexample", {"d_model": 512, "base": 10000, "k": k, "f(k)": float(f[k]), "f(k+1)": float(f[k + 1])})
    assert k == 43 and f[44] > f[43], f"the first rise of the curve moved to {k}"


@pytest.mark.claim("pe.why-10000", kind="measured")
def test_base_sets_the_similarity_horizon_not_the_collision_distance(measure):
    """d = 512 over 16384 positions (32x the paper's 512): no base lets two codes come closer than neighbours;
    what the base sets is the offset at which similarity has fallen to 10% of its peak."""
    d_model, n = 512, 16384
    summary = {}
    for base in (10.0, 100.0, 1000.0, 10000.0):
        f = _similarity_curve(d_model, n, base)
        distance = (d_model - 2 * f).clamp(min=0).sqrt()  # ||PE(p + k) - PE(p)|| for every p
        horizon = int((f <= 0.1 * f[0]).nonzero()[0])
        summary[base] = dict(nearest_distance=float(distance[1:].min()), nearest_offset=int(distance[1:].argmin()) + 1,
                             neighbour_distance=float(distance[1]), horizon=horizon,
                             longest_wavelength=2 * math.pi * base ** (1 - 2 / d_model))
    measure("by_base", {str(int(b)): s for b, s in summary.items()}, d_model=d_model, positions=n)
    for base, row in summary.items():
        params = {"base": int(base)}
        measure("nearest_code_distance", row["nearest_distance"], params=params, d_model=d_model, positions=n,
                offset=row["nearest_offset"])
        measure("similarity_horizon", row["horizon"], params=params, d_model=d_model,
                definition="smallest offset k with <PE(p), PE(p+k)> <= 10% of its value at k = 0")
    for s in summary.values():  # nothing collides: the nearest pair is always two neighbours
        assert s["nearest_offset"] == 1 and s["nearest_distance"] > 1.0, s
    horizons = [s["horizon"] for s in summary.values()]
    assert horizons == sorted(set(horizons)) and summary[10000.0]["horizon"] > 512, horizons
    assert summary[10.0]["nearest_distance"] > summary[10000.0]["nearest_distance"]


@pytest.mark.claim("pe.learned-no-extrapolation", kind="exact")
@given(config=model_configs(positional=("learned",)), max_len=st.integers(1, 8), seed=seeds)
def test_learned_positions_refuse_lengths_past_the_table_sinusoidal_extend(config, max_len, seed):
    """A learned table of max_len rows serves lengths up to max_len and refuses max_len + 1 (also when a cache
    reaches it); the sinusoidal code of the same model serves 4 max_len positions, all distinct."""
    model = seeded_model(config.with_(max_len=max_len), seed)
    src = torch.ones(1, max_len, dtype=torch.long)
    memory = model.encode(src)
    with pytest.raises(ValueError, match="max_len"):
        model.encode(torch.ones(1, max_len + 1, dtype=torch.long))
    cache = model.new_cache()
    model.decode(src, memory, cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        model.decode(src[:, :1], memory, cache=cache)
    codes = added_code(config.d_model, range(0, 4 * max_len))
    sinusoidal = seeded_model(config.with_(max_len=max_len, positional="sinusoidal"), seed)
    assert torch.isfinite(sinusoidal.encode(torch.ones(1, 4 * max_len, dtype=torch.long))).all()
    assert torch.cdist(codes, codes).add(torch.eye(4 * max_len)).min() > 0, "two positions share a code"


# ---------------------------------------------------------------------------------------------------
# Relative schemes: rotary and ALiBi
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("pe.rope-relative", kind="exact")
@given(h=st.integers(1, 4), half=st.integers(1, 8), m=st.integers(0, 1000), n=st.integers(0, 1000),
       shift=st.integers(-1000, 1000), seed=seeds)
def test_rotary_scores_depend_only_on_relative_position(h, half, m, n, shift, seed):
    """<RoPE(q, m), RoPE(k, n)> = <RoPE(q, m + s), RoPE(k, n + s)>; norms are kept; and the score does
    change with m - n (a rotation that is never applied would pass the first part)."""
    d_k, shift = 2 * half, max(shift, -min(m, n))
    rope = RotaryEmbedding(d_k)
    q, k = gaussian((1, h, 1, d_k), seed), gaussian((1, h, 1, d_k), seed + 1)
    at = lambda x, p: rope(x, torch.tensor([p]))  # noqa: E731
    score = lambda a, b: (at(q, a) * at(k, b)).sum(-1)  # noqa: E731  (1, h, 1)
    torch.testing.assert_close(score(m + shift, n + shift), score(m, n), **FLOAT64_DEEP)
    torch.testing.assert_close(at(q, m).norm(dim=-1), q.norm(dim=-1), **FLOAT64)
    assert (score(1, 0) - score(0, 0)).abs().max() > MARGIN, "an offset of one position left the score unchanged"


def _shifted_by_masked_ghosts(attention: MultiHeadAttention, x: torch.Tensor, shift: int, seed: int) -> torch.Tensor:
    """Run self-attention on x as if it sat at positions shift.., behind `shift` cached keys that are all masked."""
    B, S, D = x.shape
    ghosts = KVCache(gaussian((B, attention.h, shift, attention.d_k), seed + 7),
                     gaussian((B, attention.h, shift, attention.d_k), seed + 8))
    allowed = torch.ones(1, 1, S, shift + S, dtype=torch.bool)
    allowed[..., :shift] = False
    return attention(x, x, x, allowed, cache=ghosts, query_offset=shift)


@pytest.mark.claim("pe.rope-relative", kind="exact")
@given(h=st.integers(1, 4), half=st.integers(1, 2), length=st.integers(1, 7), shift=st.integers(0, 1000), seed=seeds)
def test_rotary_attention_is_translation_invariant(h, half, length, shift, seed):
    """Multi-head self-attention with RoPE gives the same output when every position is shifted by s, whether
    the shift comes from query_offset alone or from s masked keys already in the cache."""
    torch.manual_seed(seed)
    d_k = 2 * half
    attention = MultiHeadAttention(h * d_k, h, rotary=RotaryEmbedding(d_k)).double()
    x = gaussian((2, length, h * d_k), seed)
    here = attention(x, x, x)
    torch.testing.assert_close(attention(x, x, x, query_offset=shift), here, **FLOAT64_DEEP)
    torch.testing.assert_close(_shifted_by_masked_ghosts(attention, x, shift, seed), here, **FLOAT64_DEEP)


@pytest.mark.claim("pe.sinusoid-shape", kind="exact")
@given(half=st.integers(1, 16), pos=st.integers(0, 10_000))
def test_sinusoidal_code_is_section_3_5_with_base_10000_by_default(half, pos):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)) (Vaswani et al. 2017,
    section 3.5) from the defaults of the function and of the module: the shape properties hold for any base."""
    d = 2 * half
    angles = [pos / 10000.0 ** (2 * i / d) for i in range(half)]
    published = torch.tensor([f(a) for a in angles for f in (math.sin, math.cos)], dtype=torch.float64)
    for code in (sinusoidal_encoding(torch.tensor([pos]), d), SinusoidalPositionalEncoding(d)(torch.tensor([pos]))):
        torch.testing.assert_close(code[0], published, **FLOAT64_DEEP)  # angles up to 1e4 rad carry ~1e-12 of round-off


# Press et al. 2022, section 3: 8 heads get 1/2, 1/4, ..., 1/256 and 16 heads 2^-0.5, 2^-1, ..., 2^-8; other
# counts (their reference code) take the slopes of the power of two below h, then every other slope of twice it.
ALIBI_REFERENCE_EXPONENTS = {  # h -> log2 of the slopes, written out by hand
    1: [-8], 2: [-4, -8], 3: [-4, -8, -2], 4: [-2, -4, -6, -8],
    6: [-2, -4, -6, -8, -1, -3], 8: [-1, -2, -3, -4, -5, -6, -7, -8],
    12: [-1, -2, -3, -4, -5, -6, -7, -8, -0.5, -1.5, -2.5, -3.5],
    16: [-0.5 * j for j in range(1, 17)],
}


@pytest.mark.claim("pe.alibi-translation-invariant", kind="exact")
@pytest.mark.parametrize("h", sorted(ALIBI_REFERENCE_EXPONENTS))
def test_alibi_head_slopes_are_the_published_sequence(h):
    """The bias the model's ALiBi adds for head j at distance 1 is minus the published slope of head j, in order:
    relative-position properties hold for any slopes, so only the published values pin the order and the base."""
    expected = torch.tensor([2.0**e for e in ALIBI_REFERENCE_EXPONENTS[h]], dtype=torch.float64)
    bias = ALiBi(h)(torch.tensor([1]), torch.tensor([0]))  # (H, 1, 1): distance 1
    torch.testing.assert_close(-bias[:, 0, 0], expected, rtol=FLOAT64.rtol, atol=0)


@pytest.mark.claim("pe.rope-relative", kind="exact")
@given(half=st.integers(1, 8), m=st.integers(0, 5000))
def test_rotary_rotates_interleaved_pairs_by_the_published_angles(half, m):
    """Su et al. 2021 (RoFormer, eq. 13-15): coordinates (2i, 2i+1) form a pair rotated by m theta_i, theta_i =
    10000^(-2i/d), as [[cos, -sin], [sin, cos]]. So the unit vector e_2i at position m becomes cos e_2i + sin e_2i+1
    and e_2i+1 becomes -sin e_2i + cos e_2i+1. A halves layout (pairs (i, i + d/2)), a flipped sign or exponent
    keeps every relative-position property and fails here."""
    d_k = 2 * half
    rope = RotaryEmbedding(d_k)
    basis = torch.eye(d_k, dtype=torch.float64)[None, None]  # (1, 1, d_k, d_k): row r is e_r
    rotated = rope(basis, torch.full((d_k,), m))[0, 0]  # row r: RoPE(e_r, m)
    expected = torch.zeros(d_k, d_k, dtype=torch.float64)
    for i in range(half):
        angle = m * 10000.0 ** (-2 * i / d_k)
        c, s = math.cos(angle), math.sin(angle)
        expected[2 * i, 2 * i], expected[2 * i, 2 * i + 1] = c, s
        expected[2 * i + 1, 2 * i], expected[2 * i + 1, 2 * i + 1] = -s, c
    torch.testing.assert_close(rotated, expected, **FLOAT64_DEEP)  # angles up to 5000 rad carry ~1e-12 of round-off


@pytest.mark.claim("pe.alibi-translation-invariant", kind="exact")
@given(h=st.integers(1, 4), d_k=st.integers(1, 4), length=st.integers(1, 7), shift=st.integers(0, 1000),
       seed=seeds)
def test_alibi_attention_is_translation_invariant(h, d_k, length, shift, seed):
    """The ALiBi bias of (i + s, j + s) equals that of (i, j), and self-attention with ALiBi behind s masked
    cached keys (positions shifted by s) returns what it returns at position 0."""
    positions = torch.arange(length)
    alibi = ALiBi(h)
    torch.testing.assert_close(alibi(positions + shift, positions + shift), alibi(positions, positions), **FLOAT64)
    torch.manual_seed(seed)
    attention = MultiHeadAttention(h * d_k, h, alibi=alibi).double()
    x = gaussian((2, length, h * d_k), seed)
    torch.testing.assert_close(_shifted_by_masked_ghosts(attention, x, shift, seed), attention(x, x, x), **FLOAT64_DEEP)
    if length > 1:  # the bias is not vacuous: the same keys at a distance get different scores
        assert (alibi(positions, positions)[:, 0, 1] < 0).all()
