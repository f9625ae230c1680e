"""Section K claims that need no trained model: caches and masks, gradients through a shared
vocabulary, shared query/key projections, the cost of additive attention, BatchNorm, ReLU's scale.

Decoding one token at a time over a key/value cache never meets a future key, so the causal mask has
nothing to hide; several new tokens at once, or a prefix recomputed through stacked layers, do meet
them. An embedding lookup only touches the rows it reads, while a tied output projection scores every
row. The statistical checks below use distribution-free intervals (`properties.stats`) at the
rates named in `properties.tolerances`, each reporting its power against the alternative it rejects.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from properties.stats import (
    clopper_pearson,
    hoeffding_interval,
    hoeffding_power,
    median_interval,
    median_interval_power,
    proportion_bound_power,
)
from properties.strategies import model_configs, seeded_model, seeds
from properties.tolerances import (
    ALPHA_BATCHNORM_SATURATION,
    ALPHA_BATCHNORM_SMALL_BATCH,
    ALPHA_QK_SHARED_DIAGONAL_MASS,
    ALPHA_RELU_GAIN,
    FLOAT64_DEEP,
)
from transformer import MultiHeadAttention, Transformer, TransformerConfig
from transformer.attention import AdditiveAttention, scaled_dot_product_attention

SEES_THE_FUTURE = 1e3 * FLOAT64_DEEP.atol  # a gap this large is not round-off


def _distinct_tokens(batch: int, length: int, vocab: int, seed: int) -> torch.Tensor:
    """(B, T) token ids in which neighbouring tokens always differ, so seeing the next one changes something."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randint(1, vocab, (batch, length), generator=g)
    return steps.cumsum(1) % vocab


def _cached_without_mask(model: Transformer, tgt: torch.Tensor, memory: torch.Tensor, chunks: list[int]):
    """Feed tgt to a fresh cache in the given chunk sizes with no self-attention mask at all.
    tgt (B, T), memory (B, S, D) -> decoder states (B, T, D)."""
    cache, start, outputs = model.new_cache(), 0, []
    for size in chunks:
        y = model.tgt_embed(tgt[:, start:start + size], position_offset=cache.offset)
        outputs.append(model.decoder(y, memory, None, None, cache))
        cache.offset += size
        start += size
    return torch.cat(outputs, 1)


# ---------------------------------------------------------------------------------------------------
# arch.kv-cache-no-mask-needed
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.kv-cache-no-mask-needed", kind="exact")
@given(config=model_configs(), batch=st.integers(1, 3), src_len=st.integers(1, 6), tgt_len=st.integers(2, 6),
       seed=seeds)
def test_one_token_cached_decoding_needs_no_causal_mask_a_chunk_does(config, batch, src_len, tgt_len, seed):
    """One new token per step over a key/value cache: with no self-attention mask at all the decoder
    states equal the causally masked parallel pass at every position (the cache holds only the past).
    Feeding the same tokens as one chunk of two or more without the mask changes the chunk's first
    position, which then sees the token after it."""
    model = seeded_model(config, seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=torch.Generator().manual_seed(seed))
    tgt = _distinct_tokens(batch, tgt_len, config.tgt_vocab_size, seed + 1)
    with torch.no_grad():
        memory = model.encode(src)
        masked = model.decode(tgt, memory)  # (B, T, D), the training-time computation
        one_by_one = _cached_without_mask(model, tgt, memory, [1] * tgt_len)
        chunk = _cached_without_mask(model, tgt, memory, [tgt_len])
    torch.testing.assert_close(one_by_one, masked, **FLOAT64_DEEP)
    gap = (chunk[:, 0] - masked[:, 0]).abs().amax(-1)  # (B,)
    assert (gap > SEES_THE_FUTURE).all(), f"an unmasked chunk's first position did not change: {gap.tolist()}"


# ---------------------------------------------------------------------------------------------------
# embed.lookup-gradient-rows
# ---------------------------------------------------------------------------------------------------

def _embedding_gradient(config: TransformerConfig, seed: int, present: int):
    """Gradient of the target embedding table after one loss on tokens drawn from ids < present.
    Returns (grad (V, D), the set of ids read by any lookup that uses that table)."""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src, tgt, gold = (torch.randint(0, present, (2, 4), generator=g) for _ in range(3))
    F.nll_loss(model(src, tgt).flatten(0, 1), gold.flatten()).backward()
    read = set(tgt.flatten().tolist()) | (set(src.flatten().tolist()) if config.tying == "three-way" else set())
    return model.tgt_embed.token.weight.grad, read


@pytest.mark.claim("embed.lookup-gradient-rows", kind="exact")
@given(config=model_configs(tying="none"), seed=seeds)
def test_only_the_rows_of_tokens_present_get_gradient_through_the_lookup(config, seed):
    """Untied: the embedding table's gradient is exactly zero on every row whose token no lookup read,
    and nonzero on the rows it read. Two ids of the vocabulary never occur."""
    grad, read = _embedding_gradient(config, seed, present=config.tgt_vocab_size - 2)
    touched = {i for i in range(grad.shape[0]) if bool((grad[i] != 0).any())}
    assert touched == read, f"rows with gradient {sorted(touched)}, tokens read {sorted(read)}"


@pytest.mark.claim("embed.lookup-gradient-rows", kind="exact")
@given(config=st.sampled_from(["decoder", "three-way"]).flatmap(lambda tying: model_configs(tying=tying)), seed=seeds)
def test_with_a_tied_output_projection_every_row_gets_gradient(config, seed):
    """Tied to the pre-softmax projection, the same table gets gradient on every row, absent tokens
    included: the softmax over the whole vocabulary pushes every wrong token's logit down."""
    grad, read = _embedding_gradient(config, seed, present=config.tgt_vocab_size - 2)
    row_norms = grad.norm(dim=1)
    assert (row_norms > 0).all(), f"rows without gradient: {(row_norms == 0).nonzero().flatten().tolist()}"


@pytest.mark.claim("embed.lookup-gradient-rows", kind="exact")
def test_rows_with_gradient_in_one_recorded_case(measure):
    """The ledger's instance: tiny preset, vocabulary of 40, a batch drawn from 8 of its ids; how many
    rows of the target table get gradient untied, tied to the output projection, and three-way tied."""
    counts, reads = {}, {}
    for tying in ("none", "decoder", "three-way"):
        config = TransformerConfig.tiny(vocab_size=40, pad_id=None, tying=tying)
        grad, read = _embedding_gradient(config, 0, present=8)
        counts[tying], reads[tying] = int((grad.abs().sum(1) > 0).sum()), len(read)
        measure("rows_with_gradient", counts[tying], params={"tying": tying}, of=grad.shape[0], tokens_read=len(read))
    measure("rows_with_gradient_untied", counts["none"], of=40)
    measure("rows_with_gradient_tied", counts["decoder"], of=40)
    measure("vocabulary_rows", 40)
    measure("tokens_read_untied", reads["none"])
    assert counts["none"] == reads["none"] < counts["decoder"] == counts["three-way"] == 40, (counts, reads)


# ---------------------------------------------------------------------------------------------------
# qk.shared-projection-identity-like
# ---------------------------------------------------------------------------------------------------

QK_WIDTHS = (4, 16, 64, 128)
QK_TOKENS = 16
QK_TRIALS = 1000


def query_diagonal_mass(qk: str, d: int, n: int, trials: int, seed: int) -> torch.Tensor:
    """Weight query 0 puts on itself, one head of width d over n LayerNorm-ed Gaussian tokens, for
    independent trials (fresh tokens and, for "shared", a fresh W = W_q = W_k and bias drawn as
    nn.Linear draws them: uniform in +-1/sqrt(d)). Scores q_i . q_j / sqrt(d) with q = x W^T + b
    ("shared") or q = x ("none"), through the project's attention function. -> (trials,)"""
    g = torch.Generator().manual_seed(seed)
    x = F.layer_norm(torch.randn(trials, n, d, generator=g), (d,))  # (N, n, d), float32: weights in [0, 1]
    q = x
    if qk == "shared":
        bound = 1 / math.sqrt(d)
        w = (2 * torch.rand(trials, d, d, generator=g) - 1) * bound
        b = (2 * torch.rand(trials, 1, d, generator=g) - 1) * bound
        q = x @ w.transpose(-1, -2) + b
    _, weights = scaled_dot_product_attention(q[:, None, :1], q[:, None], q[:, None])  # (N, 1, 1, n)
    return weights[:, 0, 0, 0]


def test_the_shared_projection_model_computes_what_query_diagonal_mass_simulates():
    """The tie to the model: MultiHeadAttention(qk_projection="shared") scores q_i . q_j / sqrt(d) with
    q = x W^T + b for its one W (so the simulation's formula is the model's), and nn.Linear's default
    weight and bias are uniform in +-1/sqrt(d), the law the simulation draws (bounds reached within 1%)."""
    d, n = 64, 16
    torch.manual_seed(0)
    mha = MultiHeadAttention(d, 1, qk_projection="shared").double()
    for p in (mha.w_q.weight, mha.w_q.bias):
        assert p.abs().max() <= 1 / math.sqrt(d) and p.abs().max() > 0.99 / math.sqrt(d)
    x = F.layer_norm(torch.randn(1, n, d, dtype=torch.float64), (d,))
    with torch.no_grad():
        mha(x, x, x)
        q = mha.w_q(x)
        expected = torch.softmax(q @ q.transpose(-1, -2) / math.sqrt(d), -1)  # (1, n, n)
    torch.testing.assert_close(mha.last_weights[:, 0], expected, **FLOAT64_DEEP)


@pytest.mark.claim("qk.shared-projection-identity-like", kind="statistical")
def test_shared_projection_puts_less_mass_on_the_diagonal_than_no_projection(measure):
    """With W_q = W_k the map is far from the identity at small head widths and approaches it only at
    large ones; without projections it is close to the identity from d = 64 on. Diagonal mass of one
    query among 16 tokens, 1000 independent trials per setting, Hoeffding intervals at
    ALPHA_QK_SHARED_DIAGONAL_MASS split over the 10 settings (widths 4..128 for both cases, and both
    cases at d = 64 with 64 tokens). Decision: shared at d = 4 below 1/2 (not identity-like), no
    projection at d = 64 above 0.8, shared below no projection at d = 16 and 64."""
    settings = [(qk, d, QK_TOKENS) for qk in ("shared", "none") for d in QK_WIDTHS] + [("shared", 64, 64), ("none", 64, 64)]
    each = ALPHA_QK_SHARED_DIAGONAL_MASS / len(settings)
    found = {}
    for i, (qk, d, n) in enumerate(settings):
        mean, low, high = hoeffding_interval(query_diagonal_mass(qk, d, n, QK_TRIALS, 1000 + i), each)
        found[qk, d, n] = (mean, low, high)
        measure("diagonal_mass", mean, params={"qk": qk, "d": d, "n": n}, interval=[low, high], confidence=1 - each,
                n=QK_TRIALS)
    small, none64 = found["shared", 4, QK_TOKENS], found["none", 64, QK_TOKENS]
    measure("shared_small_width_below_half", small[0], interval=list(small[1:]),
            confidence=1 - ALPHA_QK_SHARED_DIAGONAL_MASS, alpha=ALPHA_QK_SHARED_DIAGONAL_MASS,
            power=hoeffding_power(QK_TRIALS, each, 0.3, 0.5), power_at="a true diagonal mass of 0.3",
            alternative="W_q = W_k gives an identity-like map at every width: diagonal mass >= 1/2 at d = 4")
    assert small[2] < 0.5, f"shared W at d = 4: diagonal mass {small}"
    assert none64[1] > 0.8, f"no projection at d = 64: diagonal mass {none64}"
    for d in (16, 64):  # where the two differ by more than the intervals' widths
        assert found["shared", d, QK_TOKENS][2] < found["none", d, QK_TOKENS][1], (d, found)


# ---------------------------------------------------------------------------------------------------
# attn.additive-total-cost-similar, attn.dot-vs-additive-cost
# ---------------------------------------------------------------------------------------------------

MATMULS = {"aten.mm", "aten.bmm", "aten.addmm", "aten.baddbmm", "aten.matmul", "aten.linear"}


class ElementwiseCounter(TorchDispatchMode):
    """Counts the output elements of every operation that is not a matrix product (adds, tanh, exp,
    divisions, masks...): the element-wise work FlopCounterMode does not see."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        views = ("view", "t", "transpose", "unsqueeze", "squeeze", "expand", "_unsafe_view", "slice", "select",
                 "permute", "clone", "detach", "alias", "_to_copy", "empty", "zeros", "copy_")
        if f"aten.{name}" not in MATMULS and name not in views and isinstance(out, torch.Tensor):
            self.elements += out.numel()
        return out


class DotProductScorer(nn.Module):
    """Scaled dot-product attention with its own query and key projections (width d -> d_k), so that its
    cost is comparable with additive attention's W_q, W_k (d -> d_a)."""

    def __init__(self, d: int, d_k: int):
        super().__init__()
        self.w_q, self.w_k = nn.Linear(d, d_k, bias=False), nn.Linear(d, d_k, bias=False)

    def forward(self, q, k, v):
        # q (B, S_q, d), k (B, S_k, d), v (B, S_k, d_v) -> (B, S_q, d_v), weights
        return scaled_dot_product_attention(self.w_q(q)[:, None], self.w_k(k)[:, None], v[:, None])


def true_peak_bytes(fn) -> int:
    """Largest total of live CPU allocations while fn runs: the running sum of the profiler's allocation
    (+) and free (-) records in time order, starting from what was live before."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
    live = peak = 0
    for record in records:
        live += record.nbytes()
        peak = max(peak, live)
    return peak


def interleaved_best_times(fns: dict, repeats: int) -> dict[str, float]:
    """Best of `repeats` wall-clock times of each function, the functions taking turns, so that a change
    in machine load hits all of them alike."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


COST_LENGTHS = (32, 128, 512)
COST_WIDTH = 64  # d = d_k = d_a = d_v
SLOWER = 2.0  # the wall-clock decision: additive at least this many times slower at the largest n


@pytest.mark.claim("attn.additive-total-cost-similar", "attn.dot-vs-additive-cost", kind="measured")
def test_additive_attention_has_the_same_matmul_flops_but_more_memory_and_time(measure):
    """Both scorers with their own projections from width d and d_a = d_k = d: the matrix-product FLOPs
    are equal (4 n d d_k + 2 n^2 d_k + 2 n^2 d_v for both, FlopCounterMode); additive attention adds
    2 n^2 d_a element-wise operations (broadcast sum, tanh) and keeps two (n, n, d_a) tensors alive at
    once, while dot product's true peak stays below one such tensor. Wall-clock
    ratios (float32, one thread, best of 3, interleaved) are reported for n = 32, 128, 512 and decided
    generously: additive is slower at the largest n by a factor of at least SLOWER."""
    d = COST_WIDTH
    torch.manual_seed(0)
    dot, additive = DotProductScorer(d, d), AdditiveAttention(d, d)
    ratios = {}
    for n in COST_LENGTHS:
        q, k, v = (torch.randn(1, n, d) for _ in range(3))
        scorers = {"dot": lambda q=q, k=k, v=v: dot(q, k, v), "additive": lambda q=q, k=k, v=v: additive(q, k, v)}
        flops, elements, peaks = {}, {}, {}
        for name, fn in scorers.items():
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                fn()
            with torch.no_grad(), ElementwiseCounter() as counted:
                fn()
            flops[name], elements[name], peaks[name] = counter.get_total_flops(), counted.elements, true_peak_bytes(fn)
        with torch.no_grad():
            times = interleaved_best_times(scorers, repeats=3)
        ratios[n] = times["additive"] / times["dot"]
        total = {name: flops[name] + elements[name] for name in scorers}
        measure("matmul_flop_ratio", flops["additive"] / flops["dot"], params={"n": n}, unit="ratio", flops=flops)
        measure("total_operation_ratio", total["additive"] / total["dot"], params={"n": n}, unit="ratio",
                elementwise=elements)
        measure("peak_memory_ratio", peaks["additive"] / peaks["dot"], params={"n": n}, unit="ratio", bytes=peaks)
        measure("wall_clock_ratio", ratios[n], params={"n": n}, unit="ratio", seconds=times,
                setting="float32, one thread, best of 3 interleaved")
        assert flops["additive"] == flops["dot"] == 4 * n * d * d + 4 * n * n * d, flops
        assert peaks["additive"] >= 2 * n * n * d * 4 > n * n * d * 4 > peaks["dot"], peaks  # float32 bytes
        assert total["additive"] < 2 * total["dot"], (total, "element-wise work should not double the total")
    assert ratios[COST_LENGTHS[-1]] > SLOWER, f"additive / dot wall-clock ratios {ratios}"


# ---------------------------------------------------------------------------------------------------
# arch.batchnorm-small-batch-noise, arch.batchnorm-sigmoid-saturation
# ---------------------------------------------------------------------------------------------------

BN_TRIALS = 4000  # independent features, each one trial (a feature's batch statistics are its own)
BN_PROBE = 1.0  # the probe sample's value, one standard deviation above the population mean
BN_BATCHES = (2, 4, 8, 16, 64, 256)


def probe_error(batch: int, trials: int, seed: int) -> torch.Tensor:
    """|BatchNorm(x)_probe - (x_probe - mu) / sigma| in training mode, for a probe at BN_PROBE among
    batch - 1 companions from N(0, 1) (mu = 0, sigma = 1): the error the batch statistics add. -> (trials,)"""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, trials, generator=g, dtype=torch.float64)
    x[0] = BN_PROBE
    y = nn.BatchNorm1d(trials, affine=False).double().train()(x)
    return (y[0] - BN_PROBE).abs()


def train_eval_gap(batch: int, shift: float, seed: int, features: int = 256) -> float:
    """Mean |training-mode output - eval-mode output| of one batch, for a BatchNorm whose running
    statistics are the cumulative averages over 20 batches of 64 from N(0, 1), on a batch from N(shift, 1)."""
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm1d(features, affine=False, momentum=None).double()
    with torch.no_grad():
        bn.train()
        for _ in range(20):
            bn(torch.randn(64, features, generator=g, dtype=torch.float64))
        x = torch.randn(batch, features, generator=g, dtype=torch.float64) + shift
        train_mode = bn(x)
        bn.eval()
        return float((train_mode - bn(x)).abs().mean())


@pytest.mark.claim("arch.batchnorm-small-batch-noise", kind="statistical")
def test_batchnorm_adds_more_noise_the_smaller_the_batch(measure):
    """A sample's normalised value depends on its batch companions; the error against the population's
    normalisation shrinks as the batch grows (mean squared error per batch size, recorded). Decision:
    a sign test that the error at batch 4 exceeds that at batch 64 more often than not, over 4000
    independent pairs, Clopper-Pearson-free: the median of the paired difference is above 0 (order
    statistics at ALPHA_BATCHNORM_SMALL_BATCH). Also recorded: with a batch of two, BatchNorm returns
    +-1 whatever the inputs; training-mode against eval-mode outputs of one batch, from the data the
    running statistics came from and from data shifted by two standard deviations."""
    for i, batch in enumerate(BN_BATCHES):
        error = probe_error(batch, BN_TRIALS, 10 + i)
        measure("probe_mean_squared_error", float((error**2).mean()), params={"batch": batch}, n=BN_TRIALS)
    pair = torch.tensor([[-1.5, 2.0, 0.3], [0.5, -1.0, 3.3]], dtype=torch.float64)  # any two distinct rows
    two = nn.BatchNorm1d(3, affine=False).double().train()(pair)
    measure("batch_of_two_output_magnitude", float(two.abs().mean()), spread=float(two.abs().std()))
    for batch in (4, 64):
        measure("train_eval_gap", train_eval_gap(batch, 0.0, 30 + batch), params={"batch": batch},
                data="same distribution as the running statistics")
    measure("train_eval_gap_shifted", train_eval_gap(64, 2.0, 31), shift=2.0, batch=64)
    diff = probe_error(4, BN_TRIALS, 1) - probe_error(64, BN_TRIALS, 2)
    alpha = ALPHA_BATCHNORM_SMALL_BATCH
    med, low, high = median_interval(diff, alpha)
    share = float((diff > 0).double().mean())
    measure("error_batch4_minus_batch64", med, interval=[low, high], confidence=1 - alpha, alpha=alpha,
            power=median_interval_power(BN_TRIALS, alpha, 0.6),
            power_at="a share of 0.6 of pairs with the larger error at batch 4",
            alternative="batch size does not matter: median paired difference 0", share_larger_at_small_batch=share)
    assert low > 0, f"error at batch 4 minus batch 64: median {med:.4f} [{low:.4f}, {high:.4f}]"
    torch.testing.assert_close(two.abs(), torch.ones_like(two), rtol=0, atol=1e-4)  # eps = 1e-5 in the variance


def saturated_share(scale: float, shift: float, batchnorm: bool, trials: int, seed: int, batch: int = 64):
    """1 where sigmoid'(z) < 0.01 for the first sample's pre-activation z = scale * x + shift (x ~ N(0, 1)),
    before or after a training-mode BatchNorm (no affine, as at initialisation). -> (trials,)"""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, trials, generator=g, dtype=torch.float64) * scale + shift
    if batchnorm:
        z = nn.BatchNorm1d(trials, affine=False).double().train()(z)
    s = torch.sigmoid(z[0])
    return (s * (1 - s) < 0.01).double()


NORMAL_SATURATED = 2 * 0.5 * math.erfc(4.6 / math.sqrt(2))  # P(|N(0, 1)| > 4.6): sigmoid' < 0.01 there
BN_INPUTS = ((1.0, 0.0), (4.0, 0.0), (4.0, 3.0), (8.0, -2.0))  # (scale, shift) of the pre-activations


@pytest.mark.claim("arch.batchnorm-sigmoid-saturation", kind="statistical")
def test_batchnorm_keeps_sigmoid_units_out_of_saturation(measure):
    """Share of units whose sigmoid derivative is below 0.01 (|z| > 4.6), for pre-activations of four
    scales and shifts, without and with BatchNorm (batch 64, gain 1 and bias 0 as initialised): 4000
    independent units per setting, Clopper-Pearson intervals at ALPHA_BATCHNORM_SATURATION over the 8.
    Decision: with BatchNorm every upper bound is below 0.01; without it the shifted and scaled inputs
    (all but the first) have lower bounds above 0.15."""
    each = ALPHA_BATCHNORM_SATURATION / (2 * len(BN_INPUTS))
    bounds = {}
    for i, (scale, shift) in enumerate(BN_INPUTS):
        for batchnorm in (False, True):
            units = saturated_share(scale, shift, batchnorm, BN_TRIALS, 20 + 2 * i + batchnorm)
            mean = float(units.mean())
            low, high = clopper_pearson(int(units.sum()), BN_TRIALS, each)
            bounds[scale, shift, batchnorm] = (mean, low, high)
            measure("saturated_share", mean, params={"scale": scale, "shift": shift, "batchnorm": batchnorm},
                    interval=[low, high], confidence=1 - each, n=BN_TRIALS)
    without = [bounds[scale, shift, False] for scale, shift in BN_INPUTS[1:]]
    measure("saturated_share_without_batchnorm_lowest", min(b[0] for b in without), of="the shifted or scaled inputs")
    measure("saturated_share_without_batchnorm_highest", max(b[0] for b in without))
    worst_with = max((bounds[key] for key in bounds if key[2]), key=lambda b: b[2])
    measure("saturated_share_with_batchnorm_worst", worst_with[0], interval=list(worst_with[1:]),
            confidence=1 - ALPHA_BATCHNORM_SATURATION, alpha=ALPHA_BATCHNORM_SATURATION,
            power=proportion_bound_power(BN_TRIALS, each, 0.01, NORMAL_SATURATED, above=False),
            power_at="the share P(|z| > 4.6) = 4.2e-6 of a standard normal z",
            alternative="BatchNorm does not prevent saturation: a share of 0.01 or more after it")
    assert all(bounds[key][2] < 0.01 for key in bounds if key[2]), bounds
    assert all(bounds[scale, shift, False][1] > 0.15 for scale, shift in BN_INPUTS[1:]), bounds


# ---------------------------------------------------------------------------------------------------
# arch.relu-amplitude-grows
# ---------------------------------------------------------------------------------------------------

RELU_WIDTH, RELU_DEPTH, RELU_NETS = 64, 8, 100
INITS = {
    "pytorch_default": lambda w: None,  # kaiming_uniform(a = sqrt 5): variance 1 / (3 fan_in)
    "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),  # 2 / fan_in
    "xavier": nn.init.xavier_normal_,  # 2 / (fan_in + fan_out) = 1 / fan_in here
    "unit_normal": nn.init.normal_,  # 1: unscaled
}


def per_layer_gain(init: str, seed: int, layer: nn.Linear) -> float:
    """Geometric mean over RELU_DEPTH layers of RMS(h_{l+1}) / RMS(h_l) for h_{l+1} = W_l relu(h_l),
    square bias-free layers, each freshly initialised by nn.Linear's reset_parameters() and then by
    `init`, Gaussian inputs."""
    torch.manual_seed(seed)
    h = torch.randn(32, RELU_WIDTH)
    start = h.pow(2).mean().sqrt()
    for _ in range(RELU_DEPTH):
        layer.reset_parameters()  # the default init, redrawn: a new layer each time
        INITS[init](layer.weight)
        h = layer(torch.relu(h))
    return float((h.pow(2).mean().sqrt() / start) ** (1 / RELU_DEPTH))


@pytest.mark.claim("arch.relu-amplitude-grows", kind="statistical")
def test_relu_scale_changes_geometrically_at_a_rate_the_init_sets(measure):
    """ReLU is positively homogeneous, so each layer multiplies the scale by a gain the weights set,
    sqrt(fan_in Var(w) / 2): the amplitude grows only if Var(w) > 2 / fan_in. Per init, the median
    per-layer gain over 100 independent networks (8 layers, width 64) with sign-test intervals at
    ALPHA_RELU_GAIN / 4 each. Decision: under PyTorch's default and Xavier init the whole interval is
    below 1 (the amplitude shrinks), under He init it contains 1 within 10%, under unscaled N(0, 1)
    weights it is above 1."""
    each = ALPHA_RELU_GAIN / len(INITS)
    found = {}
    layer = nn.Linear(RELU_WIDTH, RELU_WIDTH, bias=False)
    with torch.no_grad():
        for i, init in enumerate(INITS):
            gains = torch.tensor([per_layer_gain(init, 100 * i + s, layer) for s in range(RELU_NETS)])
            found[init] = median_interval(gains, each)
            med, low, high = found[init]
            measure("per_layer_gain", med, params={"init": init}, interval=[low, high], confidence=1 - each, n=RELU_NETS)
    default = found["pytorch_default"]
    measure("default_init_gain", default[0], interval=list(default[1:]), confidence=1 - ALPHA_RELU_GAIN, alpha=ALPHA_RELU_GAIN,
            power=median_interval_power(RELU_NETS, each, 0.9), power_at="nine networks in ten with gain below 1",
            alternative="the amplitude grows with depth under the default init: median gain >= 1")
    assert found["pytorch_default"][2] < 1 and found["xavier"][2] < 1, found
    assert 0.9 < found["he"][1] and found["he"][2] < 1.1, found
    assert found["unit_normal"][1] > 1, found
