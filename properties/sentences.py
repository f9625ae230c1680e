"""Sentences written for this project, for measurements on a pretrained encoder.

Template sentences (subject, verb, object and optional place, time and clause, 5 to 20 words) give many
varied inputs for attention statistics; paraphrase pairs (two wordings of one meaning) give a ranking
task: a sentence embedding should be closer to its paraphrase than to the other sentences.
"""

from __future__ import annotations

import torch

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
