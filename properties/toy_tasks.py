"""Small toy tasks, replicated training and a paired win-rate check, for the toy-training experiments.

Every experiment trains R replicas of two or more arms (one head against several, residual against
none, ReLU against sigmoid). Replica r of every arm starts from the same draw and sees the same
training stream, so the arms differ only in the one thing compared (paired replicas). Replicas are
trained together: every parameter carries a leading replica axis, the losses are summed, and the
optimisers are elementwise, so each replica is an independent run.

A comparison's decisive statistic is W, the number of pairs in which one arm ends better than the other
(or, for a single arm, the number of replicas showing an event). W ~ Binomial(R, p). A verdict "A beats B"
is read as p >= CLAIM_WIN_RATE: A wins on nearly every initialisation. The check fails when W < c, c the
largest cut with P(W < c | p = CLAIM_WIN_RATE) <= alpha, so a true verdict fails with probability <= alpha;
its power is P(W < c | p = 1/2), the chance that it fails when the two arms are in truth a coin flip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.stats import binom

from properties.stats import clopper_pearson
from transformer.attention import scaled_dot_product_attention

CLAIM_WIN_RATE = 0.95  # "A beats B": A wins on at least this share of paired initialisations
COIN_FLIP = 0.5  # the wrong alternative: no systematic difference between the arms


# --------------------------------------------------------------------------------------------------
# Replicated parameters: every tensor has a leading replica axis R
# --------------------------------------------------------------------------------------------------

def uniform(generator: torch.Generator, replicas: int, fan_in: int, *shape: int) -> torch.Tensor:
    """PyTorch's default nn.Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for R replicas: (R, *shape)."""
    bound = fan_in ** -0.5
    return (torch.rand(replicas, *shape, generator=generator) * 2 - 1) * bound


def linear_params(generator: torch.Generator, replicas: int, name: str, d_in: int, d_out: int) -> dict[str, torch.Tensor]:
    """Weight (R, d_in, d_out) and bias (R, 1, d_out) of a replicated linear map."""
    return {f"{name}.w": uniform(generator, replicas, d_in, d_in, d_out),
            f"{name}.b": uniform(generator, replicas, d_in, 1, d_out)}


def linear(p: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    # x (R, N, d_in) -> (R, N, d_out); replica r uses its own weight
    return torch.baddbmm(p[f"{name}.b"], x, p[f"{name}.w"])


def train(params: dict[str, torch.Tensor], loss_fn: Callable[[dict, int], torch.Tensor], steps: int,
          optimiser: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> torch.Tensor:
    """Optimise the replicated params in place; loss_fn(params, step) -> (R,) per-replica losses.
    Replicas share no parameter and the optimisers are elementwise, so the summed loss trains each
    replica independently. Returns the training losses (steps, R)."""
    for tensor in params.values():
        tensor.requires_grad_(True)
    opt = optimiser(list(params.values()))
    history = []
    for step in range(steps):
        loss = loss_fn(params, step)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        history.append(loss.detach())
    for tensor in params.values():
        tensor.requires_grad_(False)
    return torch.stack(history)


# --------------------------------------------------------------------------------------------------
# The sequence task: predict (x_i + x_{i-1}) mod V at every position, with one attention block
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SequenceTask:
    """Sequences of n tokens over a vocabulary of V; the label at position i is (x_i + x_{i-1}) mod V
    (positions are cyclic). A model needs its own token and its left neighbour's."""

    vocab: int = 8
    n: int = 8

    def batch(self, generator: torch.Generator, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and labels, both (*shape, n)."""
        x = torch.randint(0, self.vocab, (*shape, self.n), generator=generator)
        return x, (x + x.roll(1, dims=-1)) % self.vocab


def one_block_params(task: SequenceTask, replicas: int, d_model: int, d_ff: int, seed: int) -> dict[str, torch.Tensor]:
    """Token and position embeddings N(0, 1), W^Q, W^K, W^V, W^O, the feed-forward and the read-out.
    The shapes do not depend on h, so one seed gives the same parameters for every number of heads."""
    g = torch.Generator().manual_seed(seed)
    p = {"embed": torch.randn(replicas, task.vocab, d_model, generator=g),
         "pos": torch.randn(replicas, 1, task.n, d_model, generator=g)}
    for name, d_in, d_out in (("w_q", d_model, d_model), ("w_k", d_model, d_model), ("w_v", d_model, d_model),
                              ("w_o", d_model, d_model), ("w_1", d_model, d_ff), ("w_2", d_ff, d_model),
                              ("out", d_model, task.vocab)):
        p.update(linear_params(g, replicas, name, d_in, d_out))
    return p


def multi_head_self_attention(p: dict[str, torch.Tensor], a: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concat(head_1..head_h) W^O with head_i = Attention(a W_i^Q, a W_i^K, a W_i^V), through the project's
    scaled_dot_product_attention; the heads are d_k = d_model / h consecutive columns, as in MultiHeadAttention.

    Shape: a (R, B, S, D) -> output (R, B, S, D), weights (R, B, H, S, S)."""
    R, B, S, D = a.shape

    def heads(name: str) -> torch.Tensor:  # -> (R, B, H, S, d_k)
        return linear(p, name, a.reshape(R, B * S, D)).view(R, B, S, h, D // h).transpose(2, 3)

    out, weights = scaled_dot_product_attention(heads("w_q"), heads("w_k"), heads("w_v"))  # (R, B, H, S, d_k)
    merged = out.transpose(2, 3).reshape(R, B * S, D)
    return linear(p, "w_o", merged).view(R, B, S, D), weights


def one_block(p: dict[str, torch.Tensor], tokens: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedding + positions, one pre-LN block (h-head self-attention, ReLU feed-forward), LayerNorm and a
    linear read-out.

    Shape: tokens (R, B, S) -> logits (R, B, S, V), attention weights (R, B, H, S, S)."""
    R, B, S = tokens.shape
    D = p["embed"].shape[-1]
    x = torch.gather(p["embed"], 1, tokens.reshape(R, B * S, 1).expand(-1, -1, D)).view(R, B, S, D) + p["pos"]
    attended, weights = multi_head_self_attention(p, F.layer_norm(x, (D,)), h)
    x = (x + attended).view(R, B * S, D)
    x = x + linear(p, "w_2", torch.relu(linear(p, "w_1", F.layer_norm(x, (D,)))))
    return linear(p, "out", F.layer_norm(x, (D,))).view(R, B, S, -1), weights


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # logits (R, B, S, V), labels (R, B, S) -> per-replica cross-entropy (R,)
    R = logits.shape[0]
    return F.cross_entropy(logits.flatten(0, 2), labels.flatten(), reduction="none").view(R, -1).mean(-1)


def own_position_weight(weights: torch.Tensor) -> torch.Tensor:
    """Mean weight a query puts on its own position, over batch, heads and queries.

    Shape: weights (R, B, H, S, S) -> (R,)."""
    return torch.diagonal(weights, dim1=-2, dim2=-1).mean((-1, -2, -3))


# --------------------------------------------------------------------------------------------------
# The regression task for multi-layer perceptrons: a fixed random teacher
# --------------------------------------------------------------------------------------------------

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@dataclass(frozen=True)
class TeacherTask:
    """x ~ N(0, I_d_in); y = act(x A) b / sqrt(hidden), A (d_in, hidden) and b (hidden,) fixed N(0, 1) draws
    from `seed`, act the teacher's activation: a smooth (tanh) or piecewise-linear (relu) target. A
    student with the teacher's activation can represent the target exactly, so comparisons of student
    activations are run on both teachers."""

    d_in: int = 8
    hidden: int = 16
    seed: int = 7
    activation: str = "tanh"

    def batch(self, generator: torch.Generator, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (*shape, d_in) and targets (*shape, 1)."""
        g = torch.Generator().manual_seed(self.seed)
        a, b = torch.randn(self.d_in, self.hidden, generator=g), torch.randn(self.hidden, generator=g)
        x = torch.randn(*shape, self.d_in, generator=generator)
        return x, (ACTIVATIONS[self.activation](x @ a) @ b / math.sqrt(self.hidden))[..., None]


def perceptron_params(replicas: int, d_in: int, width: int, depth: int, seed: int) -> dict[str, torch.Tensor]:
    """depth hidden layers of width `width` and a linear read-out, PyTorch's default init."""
    g = torch.Generator().manual_seed(seed)
    p: dict[str, torch.Tensor] = {}
    for i in range(depth):
        p.update(linear_params(g, replicas, f"hidden{i}", d_in if i == 0 else width, width))
    p.update(linear_params(g, replicas, "out", width, 1))
    return p


def perceptron(p: dict[str, torch.Tensor], x: torch.Tensor, activation: str, residual: bool = False,
               pre_activations: list | None = None) -> torch.Tensor:
    """x -> act(W x + b) per hidden layer; with residual=True every layer after the first adds its input.
    Each layer's W x + b is appended to `pre_activations` when a list is given.

    Shape: x (R, B, d_in) -> (R, B, 1)."""
    act = ACTIVATIONS[activation]
    depth = sum(1 for name in p if name.startswith("hidden") and name.endswith(".w"))
    for i in range(depth):
        z = linear(p, f"hidden{i}", x)  # (R, B, width)
        if pre_activations is not None:
            pre_activations.append(z)
        x = x + act(z) if residual and i > 0 else act(z)
    return linear(p, "out", x)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # outputs, targets (R, B, 1) -> (R,)
    return (outputs - targets).pow(2).mean((-1, -2))


# --------------------------------------------------------------------------------------------------
# Statistics: the paired win-rate check and intervals
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WinRateCheck:
    """The decision on W wins in n pairs: pass when W >= cut. alpha = P(W < cut | p = claim_rate) and
    power = P(W < cut | p = 1/2), computed exactly; interval: Clopper-Pearson for p at 1 - alpha_budget."""

    wins: int
    n: int
    cut: int
    alpha: float
    power: float
    interval: tuple[float, float]

    @property
    def passed(self) -> bool:
        return self.wins >= self.cut


def win_rate_check(wins: int, n: int, alpha_budget: float, claim_rate: float = CLAIM_WIN_RATE) -> WinRateCheck:
    cut = max(c for c in range(n + 1) if binom.cdf(c - 1, n, claim_rate) <= alpha_budget)
    if cut == 0:
        raise ValueError(f"{n} pairs cannot decide a win rate of {claim_rate} at false-alarm rate {alpha_budget}")
    return WinRateCheck(wins, n, cut, float(binom.cdf(cut - 1, n, claim_rate)), float(binom.cdf(cut - 1, n, COIN_FLIP)),
                        clopper_pearson(wins, n, alpha_budget))
