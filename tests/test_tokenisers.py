"""Bad input to the tokenisers: one test per mistake, each pinned to the message that names it."""

import pytest
import torch

from transformer.tokenisers import WordPiece, split_words, train_bpe, train_wordpiece

BPE = train_bpe(["low lower lowest"], 265)
WP = train_wordpiece(["low lower lowest"], 20)


@pytest.mark.parametrize("train", [train_bpe, train_wordpiece])
@pytest.mark.parametrize("corpus", [[], [""], ("", "")])
def test_empty_corpus_is_a_value_error(train, corpus):
    with pytest.raises(ValueError, match="empty corpus"):
        train(corpus, 300)


def test_whitespace_only_corpus_has_no_wordpiece_words():
    with pytest.raises(ValueError, match="empty corpus: it has no words"):
        train_wordpiece(["  \n\t"], 300)


def test_bpe_vocab_size_below_the_special_tokens_and_bytes_is_a_value_error():
    with pytest.raises(ValueError, match=r"vocab_size 259 is smaller than the 260 tokens .* \(4 special tokens and 256 bytes\)"):
        train_bpe(["abc"], 259)


def test_wordpiece_vocab_size_below_the_alphabet_is_a_value_error():
    # [PAD] [BOS] [EOS] [UNK], a, ##b, ##c: seven tokens before any merge
    with pytest.raises(ValueError, match="vocab_size 6 is smaller than the 7 special tokens and characters"):
        train_wordpiece(["abc"], 6)


@pytest.mark.parametrize("train", [train_bpe, train_wordpiece])
def test_non_integer_vocab_size_is_a_type_error(train):
    with pytest.raises(TypeError, match="vocab_size must be an int, got float"):
        train(["abc"], 300.0)


@pytest.mark.parametrize("train", [train_bpe, train_wordpiece])
def test_a_bare_string_as_corpus_is_a_type_error(train):
    with pytest.raises(TypeError, match="corpus must be an iterable of str texts, got str"):
        train("low lower", 300)


@pytest.mark.parametrize("train", [train_bpe, train_wordpiece])
def test_non_string_text_in_corpus_is_a_type_error(train):
    with pytest.raises(TypeError, match=r"corpus\[1\] must be a str, got bytes"):
        train(["low", b"lower"], 300)


@pytest.mark.parametrize("encode", [BPE.encode, WP.encode, WP.tokenize_word, split_words])
def test_non_string_input_to_an_encoder_is_a_type_error(encode):
    with pytest.raises(TypeError, match="must be a str, got int"):
        encode(42)


def test_lone_surrogate_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="lone surrogate U\\+D800 at index 3, which UTF-8 cannot encode"):
        BPE.encode("low\ud800")


def test_lone_surrogate_in_a_bpe_corpus_is_a_value_error():
    with pytest.raises(ValueError, match="lone surrogate U\\+DFFF"):
        train_bpe(["ok", "\udfff"], 300)


def test_wordpiece_without_its_unknown_token_is_a_value_error():
    with pytest.raises(ValueError, match=r"unk_token '\[UNK\]' is not in the vocabulary"):
        WordPiece(("a", "##b"))


def test_bpe_vocabulary_must_start_with_the_byte_alphabet():
    with pytest.raises(ValueError, match="vocab must start with BPE_BASE_VOCAB"):
        type(BPE)(BPE.vocab[1:], ())



def test_bpe_decode_of_an_id_outside_the_vocabulary_is_an_error():
    n = len(BPE.vocab)
    with pytest.raises(ValueError, match=rf"token id -1 at position 0 is outside the vocabulary \[0, {n}\)"):
        BPE.decode([-1])
    with pytest.raises(ValueError, match=rf"token id {n} at position 1 is outside the vocabulary \[0, {n}\)"):
        BPE.decode([5, n])


@pytest.mark.parametrize("bad, kind", [(2.0, "float"), ("a", "str"), (True, "bool"), (None, "NoneType")])
def test_bpe_decode_of_a_non_integer_id_is_a_type_error(bad, kind):
    with pytest.raises(TypeError, match=f"token ids must be integers, got {kind} at position 1"):
        BPE.decode([5, bad])


def test_bpe_decode_takes_integer_tensors_like_lists():
    ids = BPE.encode("lower lowest")
    assert BPE.decode(torch.tensor(ids)) == BPE.decode(ids) == "lower lowest"


def test_bpe_special_tokens_take_the_first_ids_and_no_text_encodes_to_them():
    """Padding, BOS, EOS and unknown have ids of their own: a text, even one spelling them, never uses them."""
    assert (BPE.pad_id, BPE.bos_id, BPE.eos_id, BPE.unk_id) == (0, 1, 2, 3)
    text = "".join(map(chr, range(1, 256))) + " <pad> <s></s><unk>"
    model = train_bpe([text, text], 400)
    ids = model.encode(text)
    assert model.decode(ids) == text
    assert not set(ids) & set(model.special_ids), f"special ids {model.special_ids} in the encoding of a text"
    assert model.encode("!") != [model.pad_id]


def test_bpe_decode_skips_special_tokens():
    ids = BPE.encode("low lower")
    assert BPE.decode([BPE.bos_id, *ids, BPE.eos_id, BPE.pad_id, BPE.pad_id]) == "low lower"


def test_trained_wordpiece_reserves_padding_bos_eos_and_unknown():
    assert (WP.pad_id, WP.bos_id, WP.eos_id, WP.unk_id) == (0, 1, 2, 3)
    assert WP.vocab[WP.unk_id] == "[UNK]"
    ids = WP.encode("low lower lowest zzz")
    assert WP.pad_id not in ids and ids[-1] == WP.unk_id


def test_wordpiece_never_reads_a_word_as_a_special_token():
    """A text that spells "[PAD]" is words, not padding, even when training merged it into a piece."""
    model = train_wordpiece(["[PAD] [BOS] [EOS] [PAD] low"], 60)
    ids = model.encode("[PAD] [BOS] [EOS]")
    assert not set(ids) & {model.pad_id, model.bos_id, model.eos_id, model.unk_id}, ids
    assert model.pad_id == 0 and model.vocab.count("[PAD]") == 2
