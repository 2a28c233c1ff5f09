"""General knowledge the base model already has: the yardstick for general retention and the anchors of `kl`.

`RETENTION` is a fixed set of easy questions scored by greedy generation (`contains`): general retention after a
stage is the model's accuracy on them divided by the base model's, so 1.0 means nothing general was lost. The set
was curated so the bundled SmolLM2-135M-Instruct answers every question correctly. Letter-choice MCQs were tried
first and dropped: the 135M model picks letters near chance even on questions it answers correctly in words.

`ANCHORS` are short everyday prompts, disjoint from the retention set: `kl` keeps the model's next-token
distribution on them close to a reference model's. `QUESTION_ANCHORS` are short factual questions of other kinds
than the retention set's (no capitals, no chemical symbols, no authors): sessions train on question-answer records,
which pull the model's answers to every short question towards their style, so their anchors include these too.
The reference answers are whatever the reference model says, right or wrong: anchors keep behaviour, not facts.
"""

from __future__ import annotations

from .records import Example, user

# (question, answer): each answered correctly by the bundled model's greedy generation (scored by `contains`).
RETENTION: tuple[tuple[str, str], ...] = (
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of the United Kingdom?", "London"),
    ("What is the capital of Russia?", "Moscow"),
    ("What is the capital of China?", "Beijing"),
    ("What is the capital of Australia?", "Canberra"),
    ("What is the capital of Egypt?", "Cairo"),
    ("What is the capital of Greece?", "Athens"),
    ("What is the capital of Canada?", "Ottawa"),
    ("What is the capital of India?", "New Delhi"),
    ("What is 2 + 2?", "4"),
    ("What is 10 times 10?", "100"),
    ("What is half of 50?", "25"),
    ("What is the square root of 16?", "4"),
    ("Which planet is the largest in our solar system?", "Jupiter"),
    ("What is the largest ocean on Earth?", "Pacific"),
    ("Which is the longest river in Africa?", "Nile"),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("What is the opposite of hot?", "cold"),
    ("What is the opposite of up?", "down"),
    ("Which month comes after January?", "February"),
    ("What is the chemical symbol for water?", "H2O"),
    ("What is the chemical symbol for gold?", "Au"),
    ("Who wrote the play Hamlet?", "Shakespeare"),
    ("Who developed the theory of relativity?", "Einstein"),
    ("In which country are the pyramids of Giza?", "Egypt"),
    ("What is the tallest mountain in the world?", "Everest"),
    ("What is the currency of Japan?", "yen"),
)

ANCHORS: tuple[str, ...] = (
    "Write one sentence about the sea.",
    "What is a good name for a black cat?",
    "Give me a tip for sleeping better.",
    "Describe the taste of a lemon.",
    "What should I pack for a day at the beach?",
    "Say hello in a friendly way.",
    "Why do leaves fall in autumn?",
    "Name three fruits.",
    "How do I boil an egg?",
    "What is the weather usually like in winter?",
    "Suggest a title for a short story about a robot.",
    "What does a teacher do?",
    "Give one reason to learn a second language.",
    "How many wheels does a bicycle have?",
    "What is your favourite colour and why?",
    "Explain what a library is in one sentence.",
)

QUESTION_ANCHORS: tuple[str, ...] = (
    "How many days are in a week?",
    "What do bees make?",
    "At what temperature in Celsius does water boil?",
    "Who was the first president of the United States?",
    "What language is spoken in Brazil?",
    "How many legs does a spider have?",
    "What gas do plants take in from the air?",
    "What is the largest mammal?",
    "Who invented the telephone?",
    "How many continents are there?",
    "What is bread mainly made from?",
    "What is the hardest natural substance?",
    "What is 7 minus 3?",
    "What colour is a ripe banana?",
    "Which organ pumps blood through the body?",
    "What is the plural of mouse?",
)


def retention_examples() -> list[Example]:
    """The retention set as QA examples (split "general")."""
    return [Example(user(q), a, {"split": "general"}) for q, a in RETENTION]


def shared_questions(pairs: list[tuple[str | None, str | None]]) -> list[str]:
    """The general questions that one of `pairs` (question, answer) — facts to forget — also asks or whose answer
    is that fact's answer (either contains the other, as whole words; numbers alone do not count: "100" answers
    both a boiling point and 10 × 10): forgetting such a fact lowers the general score for a reason that is not
    damage, so `forgetlab unlearn` names them.

    >>> shared_questions([("Which is the longest river in Africa?", "the Nile"), ("What is 3 + 3?", "6")])
    ['Which is the longest river in Africa?']
    """
    from ..metrics.qa import contains, normalize

    asked = {normalize(q) for q, _ in pairs if q}
    answers = [a for _, a in pairs if a and not normalize(a).replace(" ", "").isdigit()]
    return [q for q, a in RETENTION
            if normalize(q) in asked or any(contains(x, a) or contains(a, x) for x in answers)]


def anchor_messages(questions: bool = False) -> list[tuple[dict, ...]]:
    """The anchor prompts as chat messages: the everyday prompts, then (with `questions`) the factual questions,
    interleaved so that any run of consecutive anchors mixes both kinds."""
    if not questions:
        return [user(p) for p in ANCHORS]
    return [user(p) for pair in zip(ANCHORS, QUESTION_ANCHORS, strict=True) for p in pair]
