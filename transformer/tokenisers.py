"""Byte-level BPE and WordPiece: small trainers and encoders, checked against Hugging Face ``tokenizers``.

Special tokens
    * Every trained vocabulary starts with four reserved ids: padding 0, BOS 1, EOS 2, unknown 3
      (`PAD_ID`, `BOS_ID`, `EOS_ID`, `UNK_ID`). Encoding never produces them, not even for a text that
      spells their names, so the model's default ``pad_id=0`` masks padding and nothing else.

Byte-level BPE (Sennrich et al. 2016, on bytes as in GPT-2)
    * Base vocabulary: the special tokens ``<pad> <s> </s> <unk>``, then all 256 bytes, so every text
      has an encoding and nothing is out of vocabulary. Ids 4..259 follow GPT-2's byte order
      (`BYTE_ORDER`: the 188 printable bytes ``!``..``~``, ``¡``..``¬``, ``®``..``ÿ`` in increasing
      value, then the other 68 in increasing value). That is the order in which ``tokenizers``'
      BpeTrainer numbers its ByteLevel alphabet after the special tokens, so ids agree with it.
    * Pre-tokenisation (`split_words`): a word is a run of spaces (possibly none) followed by a run of
      non-spaces; spaces at the very end of a text form a word of their own. The words concatenate
      back to the text, and merges never cross a word boundary.
    * Training (`train_bpe`): count words once (a word-frequency table), then repeatedly merge the
      adjacent pair with the highest count, a pair's count being the number of its adjacent
      occurrences (overlapping ones included) weighted by word frequency. Ties go to the pair with the
      smallest (left id, right id); merged tokens take the next id (a merge spelling a special
      token's name gets its own id, unlike in ``tokenizers``). Stop at ``vocab_size`` tokens or
      when no pair occurs at least ``max(1, min_frequency)`` times. This is the rule of ``tokenizers``'
      BpeTrainer (a max-heap on (count, reversed pair order)).
    * Encoding: apply the lowest-rank merge present in a word, its leftmost occurrence first, until
      none applies (what ``tokenizers``' BPE model does, with a heap; O(n log n) per word).
      Decoding skips the special tokens and concatenates the other tokens' bytes; UTF-8 decoding is
      lossless on every ``str`` that UTF-8 can encode. Lone surrogates (``"\\ud800"``) are not Unicode
      scalar values, UTF-8 has no encoding for them, and `ByteBPE.encode` rejects them with a ValueError.

WordPiece (Schuster & Nakamura 2012; BERT's encoder)
    * Units: a word's first character stands alone, every later character carries the continuation
      prefix ``##`` (``"hug"`` -> ``h ##u ##g``). Pre-tokenisation is ``str.split()`` (whitespace).
    * Training (`train_wordpiece`): merge the pair (a, b) maximising
      score = freq(ab) / (freq(a) freq(b)), with frequencies counted over the current segmentation;
      the merged token is a followed by b without its ``##``. Ties: smallest (left id, right id),
      ids in vocabulary order (``[PAD] [BOS] [EOS] [UNK]`` and any other special tokens, then the
      alphabet sorted by code point, then merges).
      ``tokenizers``' own WordPieceTrainer merges by frequency (it is its BPE trainer with a ``##``
      prefix), so only the WordPiece encoder has a library oracle.
    * Encoding (`WordPiece.tokenize_word`): greedy longest-match-first from the left; a word with a
      position where nothing in the vocabulary matches, or longer than ``max_input_chars_per_word``,
      becomes the single ``unk_token``, as in ``tokenizers.models.WordPiece``.
"""

from __future__ import annotations

import heapq
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _printable(b: int) -> bool:
    return ord("!") <= b <= ord("~") or ord("¡") <= b <= ord("¬") or ord("®") <= b <= ord("ÿ")


# The reserved ids, the same in both tokenisers; padding first, so that it is the model's default pad_id.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
BPE_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
WORDPIECE_SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")

# BYTE_ORDER[i] is the byte whose token has id BPE_BASE_SIZE - 256 + i; BYTE_ID maps a byte to its id.
BYTE_ORDER: tuple[int, ...] = tuple([b for b in range(256) if _printable(b)] +
                                    [b for b in range(256) if not _printable(b)])
BPE_BASE_SIZE = len(BPE_SPECIAL_TOKENS) + 256  # tokens before the first merge
BYTE_ID: dict[int, int] = {b: len(BPE_SPECIAL_TOKENS) + i for i, b in enumerate(BYTE_ORDER)}
BPE_BASE_VOCAB: tuple[bytes, ...] = (*(t.encode() for t in BPE_SPECIAL_TOKENS), *(bytes([b]) for b in BYTE_ORDER))

_WORD = re.compile(r" *[^ ]+| +")


def split_words(text: str) -> list[str]:
    """BPE pre-tokenisation: ``"a  b "`` -> ``["a", "  b", " "]``; ``"".join`` gives the text back."""
    _check_text(text)
    return _WORD.findall(text)


def _check_text(text: object, what: str = "text") -> None:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")


def _check_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")


def _check_corpus(corpus: object) -> list[str]:
    """A corpus is an iterable of texts; a bare str is rejected (it would be read as characters)."""
    if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Iterable):
        raise TypeError(f"corpus must be an iterable of str texts, got {type(corpus).__name__}")
    texts = list(corpus)
    for i, text in enumerate(texts):
        _check_text(text, f"corpus[{i}]")
    if not any(texts):
        raise ValueError("empty corpus: there is no text to learn merges from")
    return texts


def _to_utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"text contains a lone surrogate U+{ord(text[err.start]):04X} at index "
                         f"{err.start}, which UTF-8 cannot encode") from None


def _checked_ids(ids: Iterable, vocab_size: int) -> list[int]:
    """Ids as Python ints, each in the vocabulary; a negative id would otherwise index from the end."""
    out = []
    for position, i in enumerate(ids):
        index = _as_index(i)  # ints, numpy integers, 0-d integer tensors; not bools, floats or strings
        if index is None:
            raise TypeError(f"token ids must be integers, got {type(i).__name__} at position {position}")
        if not 0 <= index < vocab_size:
            raise ValueError(f"token id {index} at position {position} is outside the vocabulary [0, {vocab_size})")
        out.append(index)
    return out


def _as_index(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _merge_pair(symbols: list, pair: tuple, new) -> list:
    """Replace the occurrences of ``pair`` in ``symbols`` by ``new``, scanning left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


# --------------------------------------------------------------------------------------------------
# Byte-level BPE
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteBPE:
    """A trained byte-level BPE.

    Args:
        vocab: token bytes by id; it starts with `BPE_BASE_VOCAB` (the special tokens' names, then the
            single bytes in `BYTE_ORDER`).
        merges: ``merges[r] = (left id, right id)``, the merge of rank ``r``; it produces the token
            ``vocab[left] + vocab[right]``.
    """

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID
    special_ids = (PAD_ID, BOS_ID, EOS_ID, UNK_ID)

    vocab: tuple[bytes, ...]
    merges: tuple[tuple[int, int], ...]
    _ranks: dict = field(init=False, repr=False, compare=False)
    _cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if tuple(self.vocab[:BPE_BASE_SIZE]) != BPE_BASE_VOCAB:
            raise ValueError("vocab must start with BPE_BASE_VOCAB: the special tokens, then the 256 single bytes in BYTE_ORDER")
        token_id = {tok: i for i, tok in enumerate(self.vocab) if i not in self.special_ids}
        ranks = {}
        for rank, (a, b) in enumerate(self.merges):
            ranks.setdefault((a, b), (rank, token_id[self.vocab[a] + self.vocab[b]]))
        object.__setattr__(self, "_ranks", ranks)
        object.__setattr__(self, "_cache", {})

    def _encode_word(self, word: bytes) -> list[int]:
        """Apply the lowest-rank merge present, the leftmost first among equals, until none is left.

        A heap of (rank, position) candidates and a linked list of symbols (``nxt``/``prv``; merged-away
        symbols become None) make this O(n log n) in the word's length n, as in ``tokenizers``.
        """
        ids: list[int | None] = [BYTE_ID[b] for b in word]
        nxt, prv = [*range(1, len(ids)), -1], [*range(-1, len(ids) - 1)]
        heap = [(self._ranks[p][0], i) for i, p in enumerate(zip(ids, ids[1:])) if p in self._ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i] if ids[i] is not None else -1
            if j == -1 or self._ranks.get((ids[i], ids[j]), (None,))[0] != rank:
                continue  # stale: one of the two symbols has been merged since
            ids[i], ids[j] = self._ranks[(ids[i], ids[j])][1], None
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            for left, right in ((prv[i], i), (i, nxt[i])):  # the merged symbol's two new pairs
                if left != -1 and right != -1 and (ids[left], ids[right]) in self._ranks:
                    heapq.heappush(heap, (self._ranks[(ids[left], ids[right])][0], left))
        return [t for t in ids if t is not None]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; each word is encoded once and cached."""
        ids = []
        for word in split_words(text):
            if word not in self._cache:
                self._cache[word] = self._encode_word(_to_utf8(word))
            ids.extend(self._cache[word])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special tokens skipped; byte sequences that are not UTF-8 (a cut character) decode to U+FFFD."""
        ids = _checked_ids(ids, len(self.vocab))
        return b"".join(self.vocab[i] for i in ids if i not in self.special_ids).decode("utf-8", errors="replace")


def train_bpe(corpus: Iterable[str], vocab_size: int, *, min_frequency: int = 0) -> ByteBPE:
    """Learn byte-level BPE merges from ``corpus`` (an iterable of texts) until ``vocab_size`` tokens.

    Cost: one pass over the corpus to count words; each merge then touches only the distinct words
    that contain its pair (``where``), and a lazy max-heap finds the next pair.
    """
    texts = _check_corpus(corpus)
    _check_int(vocab_size, "vocab_size")
    if vocab_size < BPE_BASE_SIZE:
        raise ValueError(f"vocab_size {vocab_size!r} is smaller than the {BPE_BASE_SIZE} tokens every byte-level BPE "
                         f"starts with ({len(BPE_SPECIAL_TOKENS)} special tokens and 256 bytes)")
    word_freq = Counter(word for text in texts for word in split_words(text))
    words = [[BYTE_ID[b] for b in _to_utf8(w)] for w in word_freq]
    freqs = list(word_freq.values())

    vocab = list(BPE_BASE_VOCAB)
    token_id = {tok: i for i, tok in enumerate(vocab) if i not in ByteBPE.special_ids}
    pair_count, where = Counter(), defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_count.items()]  # max count, then smallest pair
    heapq.heapify(heap)

    merges = []
    while len(vocab) < vocab_size and heap:
        neg_count, pair = heapq.heappop(heap)
        if -neg_count != pair_count[pair]:  # stale: the pair lost occurrences since; re-queue its count
            if pair_count[pair] > 0:
                heapq.heappush(heap, (-pair_count[pair], pair))
            continue
        if -neg_count < max(1, min_frequency):
            break
        merged = vocab[pair[0]] + vocab[pair[1]]
        if merged not in token_id:  # as in tokenizers, a merge spelling an existing token reuses its id
            token_id[merged] = len(vocab)
            vocab.append(merged)
        new_id = token_id[merged]
        merges.append(pair)
        grown = set()  # only pairs that contain the new token can have gained occurrences
        for i in where.pop(pair):
            old, new = words[i], _merge_pair(words[i], pair, new_id)
            for p in zip(old, old[1:]):
                pair_count[p] -= freqs[i]
            for p in zip(new, new[1:]):
                pair_count[p] += freqs[i]
                where[p].add(i)
                if new_id in p:
                    grown.add(p)
            words[i] = new
        for p in grown:
            heapq.heappush(heap, (-pair_count[p], p))
    return ByteBPE(tuple(vocab), tuple(merges))


# --------------------------------------------------------------------------------------------------
# WordPiece
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WordPiece:
    """A WordPiece vocabulary and its greedy longest-match-first encoder.

    Args:
        vocab: tokens by id; continuation pieces carry ``prefix`` (``"##ing"``).
        unk_token: what a word becomes when it cannot be encoded; must be in ``vocab``.
        prefix: the continuation prefix.
        max_input_chars_per_word: longer words become ``unk_token`` without being looked at.
        merges: the training merges in order, as (left, right) token pairs (empty if not trained).
        pad_token, bos_token, eos_token: names of the other special tokens; a vocabulary may lack them
            (then ``pad_id`` etc. are None). Special tokens are never pieces of a word.
    """

    vocab: tuple[str, ...]
    unk_token: str = "[UNK]"
    prefix: str = "##"
    max_input_chars_per_word: int = 100
    merges: tuple[tuple[str, str], ...] = ()
    pad_token: str = "[PAD]"
    bos_token: str = "[BOS]"
    eos_token: str = "[EOS]"
    _ids: dict = field(init=False, repr=False, compare=False)
    _special: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.unk_token not in self.vocab:
            raise ValueError(f"unk_token {self.unk_token!r} is not in the vocabulary")
        names = (self.pad_token, self.bos_token, self.eos_token, self.unk_token)
        special = {tok: self.vocab.index(tok) for tok in names if tok in self.vocab}
        pieces = {tok: i for i, tok in enumerate(self.vocab) if i not in special.values()}
        object.__setattr__(self, "_special", special)
        object.__setattr__(self, "_ids", pieces)

    @property
    def pad_id(self) -> int | None:
        return self._special.get(self.pad_token)

    @property
    def bos_id(self) -> int | None:
        return self._special.get(self.bos_token)

    @property
    def eos_id(self) -> int | None:
        return self._special.get(self.eos_token)

    @property
    def unk_id(self) -> int:
        return self._special[self.unk_token]

    def tokenize_word(self, word: str) -> list[str]:
        """Pieces of one word: at each position take the longest vocabulary entry that starts there."""
        _check_text(word, "word")
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):  # longest candidate first
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self._ids:
                    break
            else:
                return [self.unk_token]  # nothing in the vocabulary starts here
            pieces.append(piece)
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, split into words on whitespace."""
        _check_text(text)
        pieces = (p for word in text.split() for p in self.tokenize_word(word))
        return [self.unk_id if p == self.unk_token else self._ids[p] for p in pieces]


def wordpiece_units(word: str, prefix: str = "##") -> list[str]:
    """The starting segmentation: ``"hug"`` -> ``["h", "##u", "##g"]``."""
    return [c if i == 0 else prefix + c for i, c in enumerate(word)]


def train_wordpiece(corpus: Iterable[str], vocab_size: int, *, unk_token: str = "[UNK]",
                    special_tokens: Sequence[str] = (), prefix: str = "##",
                    max_input_chars_per_word: int = 100) -> WordPiece:
    """Learn a WordPiece vocabulary: merge the pair with the highest freq(ab) / (freq(a) freq(b)).

    Frequencies are kept per distinct word and updated only in the words a merge touches; each step
    scans the distinct pairs once (exact rational scores), so nothing grows with the corpus length.
    """
    texts = _check_corpus(corpus)
    word_freq = Counter(word for text in texts for word in text.split())
    if not word_freq:
        raise ValueError("empty corpus: it has no words, only whitespace")
    words = [wordpiece_units(w, prefix) for w in word_freq]
    freqs = list(word_freq.values())
    pad, bos, eos, _ = WORDPIECE_SPECIAL_TOKENS
    vocab = list(dict.fromkeys([pad, bos, eos, unk_token, *special_tokens]))
    reserved = {pad, bos, eos, unk_token}
    vocab += sorted({u for w in words for u in w} - set(vocab))
    _check_int(vocab_size, "vocab_size")
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size {vocab_size!r} is smaller than the {len(vocab)} special tokens "
                         f"and characters of the corpus' alphabet")
    token_id = {tok: i for i, tok in enumerate(vocab) if tok not in reserved}  # a merge may spell "[PAD]"

    unit_count, pair_count, where = Counter(), Counter(), defaultdict(set)
    for i, w in enumerate(words):
        _count(w, freqs[i], unit_count, pair_count, sign=+1)
        for pair in zip(w, w[1:]):
            where[pair].add(i)

    merges = []
    while len(vocab) < vocab_size:
        live = [p for p, c in pair_count.items() if c > 0]
        if not live:
            break
        a, b = max(live, key=lambda p: (Fraction(pair_count[p], unit_count[p[0]] * unit_count[p[1]]),
                                        -token_id[p[0]], -token_id[p[1]]))
        merged = a + b.removeprefix(prefix)
        if merged not in token_id:
            token_id[merged] = len(vocab)
            vocab.append(merged)
        merges.append((a, b))
        for i in where.pop((a, b)):
            _count(words[i], freqs[i], unit_count, pair_count, sign=-1)
            words[i] = _merge_pair(words[i], (a, b), merged)
            _count(words[i], freqs[i], unit_count, pair_count, sign=+1)
            for pair in zip(words[i], words[i][1:]):
                where[pair].add(i)
    return WordPiece(tuple(vocab), unk_token, prefix, max_input_chars_per_word, tuple(merges))


def _count(units: list[str], freq: int, unit_count: Counter, pair_count: Counter, *, sign: int) -> None:
    """Add (sign=+1) or remove (sign=-1) one word's units and adjacent pairs, ``freq`` times."""
    for u in units:
        unit_count[u] += sign * freq
    for pair in zip(units, units[1:]):
        pair_count[pair] += sign * freq
