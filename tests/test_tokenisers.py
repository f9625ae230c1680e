"""Bad input to the tokenisers: one test per mistake, each pinned to the message that names it."""

import pytest

from transformer.tokenisers import WordPiece, split_words, train_bpe, train_wordpiece

BPE = train_bpe(["low lower lowest"], 260)
WP = train_wordpiece(["low lower lowest"], 20)


@pytest.mark.parametrize("train", [train_bpe, train_wordpiece])
@pytest.mark.parametrize("corpus", [[], [""], ("", "")])
def test_empty_corpus_is_a_value_error(train, corpus):
    with pytest.raises(ValueError, match="empty corpus"):
        train(corpus, 300)


def test_whitespace_only_corpus_has_no_wordpiece_words():
    with pytest.raises(ValueError, match="empty corpus: it has no words"):
        train_wordpiece(["  \n\t"], 300)


def test_bpe_vocab_size_below_the_byte_alphabet_is_a_value_error():
    with pytest.raises(ValueError, match="vocab_size 255 is smaller than the 256-byte base alphabet"):
        train_bpe(["abc"], 255)


def test_wordpiece_vocab_size_below_the_alphabet_is_a_value_error():
    # [UNK], a, ##b, ##c: four tokens before any merge
    with pytest.raises(ValueError, match="vocab_size 3 is smaller than the 4 special tokens and characters"):
        train_wordpiece(["abc"], 3)


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
    with pytest.raises(ValueError, match="vocab must start with the 256 single bytes"):
        type(BPE)(BPE.vocab[1:], ())
