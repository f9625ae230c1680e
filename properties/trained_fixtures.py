"""Re-exports the cache, the sentence data and the BERT experiments from their modules (and keeps median_interval)."""

from __future__ import annotations

import torch
from scipy.stats import binom

from properties._cache import computed_once
from properties.bert_experiments import (
    ATTENTION_SENTENCES,
    CONTROL_STEPS,
    EXPERIMENT_SOURCES,
    PRUNE_SENTENCES,
    PRUNE_STEP,
    HeadGates,
    attention_measurements,
    attention_statistics,
    encode,
    head_measurements,
    minilm_identity,
    offline,
    row_statistics,
    shuffled_copy,
)
from properties.sentences import PARAPHRASES, paraphrase_sentences, template_sentences

__all__ = ["ATTENTION_SENTENCES", "CONTROL_STEPS", "EXPERIMENT_SOURCES", "PARAPHRASES", "PRUNE_SENTENCES",
           "PRUNE_STEP", "HeadGates", "attention_measurements", "attention_statistics", "computed_once", "encode",
           "head_measurements", "median_interval", "minilm_identity", "offline", "paraphrase_sentences",
           "row_statistics", "shuffled_copy", "template_sentences"]


def median_interval(values: torch.Tensor, alpha: float) -> tuple[float, float, float]:
    """Median of n independent values and the distribution-free interval [x_(r), x_(n+1-r)] around it,
    r the largest rank with 2 P(Binomial(n, 1/2) <= r - 1) <= alpha (the sign-test interval): it misses
    the true median with probability <= alpha whatever the distribution."""
    n = values.numel()
    r = 0
    while r + 1 <= n // 2 and 2 * binom.cdf(r, n, 0.5) <= alpha:
        r += 1
    if r == 0:
        raise ValueError(f"{n} values cannot bound a median at error rate {alpha}")
    x = values.flatten().double().sort().values
    return float(x.median()), float(x[r - 1]), float(x[n - r])
