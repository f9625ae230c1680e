"""Decoding: one parallel masked pass, step-by-step recomputation and cached incremental decoding agree.

Training computes every target position in one pass under the causal mask; generation produces one
token at a time, either recomputing the whole prefix or feeding only the new tokens to a key/value
cache. The three must give the same distribution at every step, and it is the causal mask that makes
the parallel pass agree with the sequential ones: without it the parallel pass sees the future.
"""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import (
    encoder_decoder_cases,
    model_configs,
    seeded_model,
    seeds,
)
from properties.tolerances import FLOAT64_DEEP
from transformer import Transformer, TransformerConfig, greedy_decode


@pytest.mark.claim("arch.teacher-forcing-parallel", "arch.kv-cache-equivalence", kind="exact")
@given(case=encoder_decoder_cases())
def test_parallel_recomputed_and_cached_decoding_agree_at_every_step(case):
    """Parallel masked pass == recomputing each prefix == feeding chunks to a KV cache, at every position."""
    config, seed, src, src_allowed, tgt, tgt_allowed, chunks = (
        case.config, case.seed, case.src, case.src_allowed, case.tgt, case.tgt_allowed, list(case.chunks))
    model = seeded_model(config, seed)
    with torch.no_grad():
        memory = model.encode(src, src_allowed)
        parallel = model.generator(model.decode(tgt, memory, src_allowed, tgt_allowed))  # (B, T, V)
        for t in range(tgt.shape[1]):  # generation without a cache: the whole prefix again at each step
            prefix = model.decode(tgt[:, : t + 1], memory, src_allowed, tgt_allowed[:, : t + 1])
            torch.testing.assert_close(model.generator(prefix[:, -1]), parallel[:, t], **FLOAT64_DEEP,
                                       msg=lambda m, t=t: f"recomputed step {t} differs from the parallel pass: {m}")
        cache, start = model.new_cache(), 0
        for size in chunks:  # generation with a cache: only the new tokens, any chunk size
            fresh = model.decode(tgt[:, start:start + size], memory, src_allowed,
                                 tgt_allowed[:, start:start + size], cache=cache)
            torch.testing.assert_close(model.generator(fresh), parallel[:, start:start + size], **FLOAT64_DEEP,
                                       msg=lambda m, start=start: f"cached chunk at {start} (sizes {chunks}) differs: {m}")
            start += size


@pytest.mark.claim("arch.teacher-forcing-parallel", kind="exact")
@given(config=model_configs(), batch=st.integers(1, 3), src_len=st.integers(1, 7), steps=st.integers(1, 6),
       seed=seeds)
def test_greedy_generation_takes_one_step_per_token_and_one_parallel_pass_reproduces_it(config, batch, src_len,
                                                                                       steps, seed):
    """Greedy generation calls the decoder once per new token (with or without a cache, same tokens), and one
    parallel masked pass over the finished sequence predicts every generated token from its prefix."""
    model = seeded_model(config, seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=torch.Generator().manual_seed(seed))
    calls = []
    hook = model.decoder.register_forward_hook(lambda m, args, out: calls.append(out.shape[1]))
    cached = greedy_decode(model, src, steps, bos_id=1)
    hook.remove()
    assert calls == [1] * steps, f"one single-token decoder call per step expected, got {calls}"
    assert torch.equal(greedy_decode(model, src, steps, bos_id=1, use_cache=False), cached)
    with torch.no_grad():
        parallel = model(src, cached[:, :-1]).argmax(dim=-1)  # (B, steps)
    assert torch.equal(parallel, cached[:, 1:]), "the parallel pass disagrees with what generation produced"


def _distinct_neighbours(tgt: torch.Tensor, vocab: int) -> torch.Tensor:
    """Make token 1 differ from token 0, so that seeing the future actually changes something."""
    tgt = tgt.clone()
    tgt[:, 1] = (tgt[:, 0] + 1 + tgt[:, 1] % (vocab - 1)) % vocab
    return tgt


def _unmasked_and_incremental(model: Transformer, src, tgt):
    """Decoder states from one pass with no causal mask, and from one-token-at-a-time cached decoding."""
    with torch.no_grad():
        memory = model.encode(src)
        unmasked = model.decoder(model.tgt_embed(tgt), memory, None, None)  # (B, T, D): every query sees every key
        cache = model.new_cache()
        incremental = torch.cat([model.decode(tgt[:, t:t + 1], memory, cache=cache) for t in range(tgt.shape[1])], 1)
    return unmasked, incremental


@pytest.mark.claim("arch.mask-needed-at-inference", "arch.kv-cache-no-mask-needed", kind="exact")
@given(config=model_configs(), batch=st.integers(1, 3), src_len=st.integers(1, 7), tgt_len=st.integers(2, 7),
       seed=seeds)
def test_without_the_causal_mask_the_last_position_differs_once_the_prefix_passes_two_layers(config, batch, src_len,
                                                                                           tgt_len, seed):
    """Generation reads the last position. Recomputing the whole prefix with the causal mask removed
    changes it when the decoder has two or more layers (the earlier positions' first-layer states saw
    later tokens and feed the last query's keys and values above), and leaves it unchanged with one
    layer (the last query sees every key anyway). Position 0 differs in both cases."""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=g)
    tgt = _distinct_neighbours(torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g),
                               config.tgt_vocab_size)
    unmasked, incremental = _unmasked_and_incremental(model, src, tgt)
    gap = (unmasked - incremental).abs().amax(dim=-1)  # (B, T)
    assert (gap[:, 0] > 1e3 * FLOAT64_DEEP.atol).all(), f"without the mask position 0 still agrees (gap {gap.tolist()})"
    if config.n_decoder_layers == 1:
        torch.testing.assert_close(unmasked[:, -1], incremental[:, -1], **FLOAT64_DEEP)
    else:
        assert (gap[:, -1] > 1e3 * FLOAT64_DEEP.atol).all(), f"{config.n_decoder_layers} layers, last position gap {gap[:, -1]}"


@pytest.mark.claim("arch.mask-needed-at-inference", kind="counterexample")
def test_the_decoder_needs_the_causal_mask_concrete_case(measure):
    """On the tiny preset with one and with two decoder layers: the unmasked parallel pass differs from
    incremental decoding at every position but the last with one layer, and at the last position too
    with two; the masked parallel pass agrees with incremental decoding everywhere."""
    src, tgt = torch.tensor([[3, 5, 7, 2]]), torch.tensor([[1, 4, 9, 6, 2]])
    for layers in (1, 2):
        model = seeded_model(TransformerConfig.tiny(vocab_size=11, n_decoder_layers=layers, pad_id=None), 0)
        unmasked, incremental = _unmasked_and_incremental(model, src, tgt)
        with torch.no_grad():
            masked = model.decode(tgt, model.encode(src))
        gap = (unmasked - incremental).abs().amax(dim=-1)[0]  # (T,)
        measure("max_abs_gap_per_position_without_mask", gap.tolist(), params={"decoder_layers": layers},
                src=src.tolist(), tgt=tgt.tolist(), config="tiny, seed 0")
        measure("last_position_gap_without_mask", float(gap[-1]), params={"decoder_layers": layers})
        measure("max_abs_gap_with_mask", float((masked - incremental).abs().max()), params={"decoder_layers": layers})
        assert (gap[:-1] > 1e-3).all(), f"every position but the last sees the future, gaps {gap.tolist()}"
        if layers == 1:
            torch.testing.assert_close(unmasked[:, -1], incremental[:, -1], **FLOAT64_DEEP)  # the last position sees all anyway
        else:
            assert gap[-1] > 1e-3, f"two layers: the last position should change, gap {float(gap[-1])}"
        torch.testing.assert_close(masked, incremental, **FLOAT64_DEEP)


def _best_time(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.claim("arch.teacher-forcing-parallel", kind="measured")
def test_one_parallel_pass_is_faster_than_sequential_steps(measure):
    """Scoring n target positions takes one decoder call in training but n calls in generation."""
    n = 64
    config = TransformerConfig.tiny(vocab_size=101, d_model=64, h=4, d_ff=256, pad_id=None, max_len=128)
    torch.manual_seed(0)
    model = Transformer(config).eval()
    src, tgt = torch.randint(0, 101, (1, n)), torch.randint(0, 101, (1, n))
    with torch.no_grad():
        memory = model.encode(src)

        def cached_steps():
            cache = model.new_cache()
            for t in range(n):
                model.decode(tgt[:, t:t + 1], memory, cache=cache)

        parallel = _best_time(lambda: model.decode(tgt, memory))
        cached = _best_time(cached_steps)
        recomputed = _best_time(lambda: [model.decode(tgt[:, : t + 1], memory) for t in range(n)], repeats=2)
    measure("sequential_cached_over_parallel", cached / parallel, n=n, parallel_s=parallel, cached_s=cached,
            config="d_model 64, 4 heads, 2+2 layers, float32, one core")
    measure("sequential_recomputed_over_parallel", recomputed / parallel, n=n, recomputed_s=recomputed)
    assert cached > 2 * parallel and recomputed > 2 * parallel, (
        f"n={n} sequential steps should cost well over one parallel pass: parallel {parallel:.4f}s, "
        f"cached {cached:.4f}s, recomputed {recomputed:.4f}s")
