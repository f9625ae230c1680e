"""Computed-once measurements of all-MiniLM-L6-v2 for the rank of sparse heads and for pruning controls.

Two questions about the pretrained heads, both answered with the cache of `properties._cache`:

* Is a sparse attention map a low-rank one? Per head, on template sentences: how concentrated its rows
  are (mass on the largest key) and how many singular directions its (n, n) map needs (effective rank).
* Is the change from removing a head explained by the parameters it takes away? The same number of
  parameters removed elsewhere, at random: scattered weight entries, and whole feed-forward units.
"""

from __future__ import annotations

import torch

from properties.bert_experiments import PRUNE_SENTENCES, encode
from properties.sentences import paraphrase_sentences, template_sentences

RANK_SENTENCES = 32  # template sentences for the singular values of every head's map
CONTROL_DRAWS = 8  # random removals of as many parameters as one head holds, per kind of control


def effective_rank(weights: torch.Tensor) -> tuple[float, int]:
    """Roy and Vetterli's effective rank exp(H(sigma / sum sigma)) and the number of singular values
    holding 90% of the squared Frobenius norm, of one (n, n) attention map."""
    sigma = torch.linalg.svdvals(weights.double())
    p = sigma / sigma.sum()
    entropy = -(p * p.clamp_min(1e-300).log()).sum()
    energy = (sigma**2).cumsum(0) / (sigma**2).sum()
    return float(entropy.exp()), int((energy < 0.9).sum()) + 1


def rank_measurements() -> dict:
    """Per sentence and head (N, L, H): the real length n, the mean largest row weight, the mean mass on
    the previous token and on [CLS] + [SEP], the effective rank and the 90%-energy rank of the map."""
    from properties.bert_experiments import row_statistics
    from transformer.pretrained import load_minilm, minilm_tokenizer

    model, tokenizer = load_minilm(torch.float32), minilm_tokenizer()
    ids, key_allowed = encode(tokenizer, template_sentences(RANK_SENTENCES))
    with torch.no_grad():
        model(ids, key_allowed)
    maps = model.attention_weights()  # L x (N, H, S, S)
    n = key_allowed.sum(1)
    L, H = len(maps), maps[0].shape[1]
    eff, r90 = torch.zeros(RANK_SENTENCES, L, H), torch.zeros(RANK_SENTENCES, L, H)
    for b in range(RANK_SENTENCES):
        k = int(n[b])
        for l in range(L):
            for h in range(H):
                eff[b, l, h], r90[b, l, h] = effective_rank(maps[l][b, h, :k, :k])
    stats = [row_statistics(w, key_allowed) for w in maps]
    per_head = {name: torch.stack([s[name] for s in stats], 1) for name in ("top1", "prev", "special")}  # (N, L, H)
    return {"n": n, **per_head, "effective_rank": eff, "rank90": r90}


def _sentence_embeddings(model, ids, key_allowed) -> torch.Tensor:
    from transformer.pretrained import mean_pool

    return mean_pool(model(ids, key_allowed), key_allowed)  # (N, D), unit norm


def control_measurements() -> dict:
    """1 - cos(embedding, embedding after a random removal) (D, N) on the PRUNE_SENTENCES paraphrase
    sentences, for CONTROL_DRAWS draws of each control, each removing as many parameters as one head
    holds (its W^Q, W^K, W^V rows with their biases and its W^O columns: 4 d d_k + 3 d_k):

    scattered: that many entries of the encoder layers' weight matrices, uniformly at random, set to 0;
    ffn_units: as many whole feed-forward hidden units (a row of W_1, its bias, a column of W_2), each
    2 d + 1 parameters, in random layers.
    """
    from transformer.pretrained import load_minilm, minilm_tokenizer

    model, tokenizer = load_minilm(torch.float32), minilm_tokenizer()
    sentences, _ = paraphrase_sentences()
    ids, key_allowed = encode(tokenizer, sentences[:PRUNE_SENTENCES])
    attn, layers = model.encoder.layers[0].self_attn, model.encoder.layers
    head_params = 4 * attn.d_model * attn.d_k + 3 * attn.d_k
    matrices = [p for name, p in model.named_parameters() if name.startswith("encoder.") and p.dim() == 2]
    bounds = torch.tensor([0] + [p.numel() for p in matrices]).cumsum(0)
    d_ff = layers[0].feed_forward.w_1.out_features
    units = head_params // (2 * attn.d_model + 1)

    with torch.no_grad():
        full = _sentence_embeddings(model, ids, key_allowed)

        def shift_after(zero_out) -> torch.Tensor:
            saved = zero_out()  # list of (flat tensor, indices, old values)
            shifted = _sentence_embeddings(model, ids, key_allowed)
            for flat, index, old in saved:
                flat[index] = old
            return 1 - (shifted * full).sum(-1)

        def scattered(g: torch.Generator):
            def zero_out():
                picked = torch.randint(int(bounds[-1]), (2 * head_params,), generator=g).unique()
                picked = picked[torch.randperm(picked.numel(), generator=g)[:head_params]]
                saved = []
                for i, p in enumerate(matrices):
                    index = picked[(picked >= bounds[i]) & (picked < bounds[i + 1])] - bounds[i]
                    flat = p.view(-1)
                    saved.append((flat, index, flat[index].clone()))
                    flat[index] = 0.0
                return saved
            return zero_out

        def ffn_units(g: torch.Generator):
            def zero_out():
                saved = []
                for unit in torch.randperm(len(layers) * d_ff, generator=g)[:units].tolist():
                    ff = layers[unit // d_ff].feed_forward
                    j = unit % d_ff
                    row = torch.arange(j * ff.w_1.in_features, (j + 1) * ff.w_1.in_features)  # W_1 row j
                    column = torch.arange(j, ff.w_2.weight.numel(), d_ff)  # W_2 (D, d_ff) column j
                    for flat, index in ((ff.w_1.weight.view(-1), row), (ff.w_1.bias, torch.tensor([j])),
                                        (ff.w_2.weight.view(-1), column)):
                        saved.append((flat, index, flat[index].clone()))
                        flat[index] = 0.0
                return saved
            return zero_out

        result = {"head_params": head_params, "ffn_unit_count": units, "ffn_unit_params": 2 * attn.d_model + 1}
        for name, control in (("scattered", scattered), ("ffn_units", ffn_units)):
            g = torch.Generator().manual_seed(0)
            result[name] = torch.stack([shift_after(control(g)) for _ in range(CONTROL_DRAWS)])  # (D, N)
    return result
