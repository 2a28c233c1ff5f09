"""Built-in synthetic tasks of invented facts about fictional entities: no model knows them beforehand.

Each domain has entities with three attributes. For every fact (entity, attribute, value) the task holds:
- training records: the answer to each *training* question form, and a 4-option MCQ per form;
- "seen" MCQ items: exactly the trained MCQs (was the trained fact stored?);
- "held_out" MCQ items: a paraphrased question never trained, options reshuffled (was it learned, not memorised?);
- QA records for greedy-generation scoring on the held-out paraphrase.
Distractors come from the same attribute's values. Everything is deterministic in (domain, seed, entities).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..config import DataConfig
from ..errors import UserError
from .records import Example, MCQItem, Task, mcq_example, user


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    train_forms: tuple[str, ...]
    heldout_form: str


@dataclass(frozen=True)
class Domain:
    syllables: tuple[str, ...]
    name_pattern: str  # "{a} {b}" etc.; {a} and {b} are invented words
    attributes: tuple[Attribute, ...]


DOMAINS: dict[str, Domain] = {
    "people": Domain(
        ("ka", "vel", "mo", "ra", "tin", "dor", "quis", "le", "bar", "nu", "sel", "fi", "gar", "o", "wen", "zil"),
        "{a} {b}",
        (
            Attribute("hometown", ("Brindlemoor", "Castavel", "Oxhollow", "Pellwick", "Quarrington", "Sunderlay",
                                   "Tarnby", "Umbergate", "Vexford", "Wyncombe"),
                      ("Where does {e} live?", "What is the hometown of {e}?"), "In which town does {e} live?"),
            Attribute("profession", ("glassblower", "cartographer", "beekeeper", "violinist", "astronomer",
                                     "blacksmith", "botanist", "puppeteer", "clockmaker", "tailor"),
                      ("What is {e}'s job?", "What does {e} do for a living?"), "What is the profession of {e}?"),
            Attribute("pet", ("ferret", "parrot", "tortoise", "goat", "iguana", "hedgehog", "owl", "llama",
                              "axolotl", "peacock"),
                      ("What pet does {e} have?", "What animal does {e} keep as a pet?"), "Which animal is {e}'s pet?"),
        ),
    ),
    "elements": Domain(
        ("zor", "kal", "tri", "vo", "nex", "bri", "dal", "phe", "ru", "sy", "tham", "ol", "cre", "mi", "lox", "ar"),
        "{a}ium",
        (
            Attribute("colour", ("crimson", "teal", "amber", "violet", "silver", "emerald", "ochre", "indigo",
                                 "coral", "charcoal"),
                      ("What colour is {e}?", "What is the colour of pure {e}?"), "Pure {e} has which colour?"),
            Attribute("discoverer", ("Dr. Halvorsen", "Dr. Okonkwo", "Dr. Marchetti", "Dr. Lindqvist", "Dr. Abara",
                                     "Dr. Fenwick", "Dr. Takeda", "Dr. Rosales", "Dr. Petrov", "Dr. Nakamura"),
                      ("Who discovered {e}?", "Which scientist first isolated {e}?"), "{e} was discovered by whom?"),
            Attribute("use", ("mirrors", "batteries", "fireworks", "lenses", "magnets", "paint", "bells",
                              "medicine", "rockets", "clocks"),
                      ("What is {e} used for?", "What is {e} mainly used to make?"), "{e} is mostly used in what?"),
        ),
    ),
    "festivals": Domain(
        ("om", "brel", "sa", "ti", "lun", "ka", "de", "ver", "pa", "is", "mar", "go", "hel", "vi", "ran", "du"),
        "the {a} Festival",
        (
            Attribute("city", ("Port Aldane", "Merrowdeep", "Kestrelton", "Saltmere", "Highvane", "Dunmarrow",
                               "Elmstead", "Greywater", "Rivenholt", "Ashcombe"),
                      ("In which city is {e} held?", "Where does {e} take place?"), "{e} is celebrated in which city?"),
            Attribute("month", ("January", "February", "March", "April", "May", "June", "July", "August",
                                "September", "October"),
                      ("In which month is {e}?", "When is {e} held each year?"), "During which month does {e} happen?"),
            Attribute("food", ("plum dumplings", "roasted chestnuts", "honey bread", "fish stew", "cheese pies",
                               "pickled pears", "barley cakes", "spiced cider", "lentil soup", "almond biscuits"),
                      ("What food is eaten at {e}?", "What is the traditional dish of {e}?"),
                      "Which dish do people eat at {e}?"),
        ),
    ),
}


def _entity_names(domain: Domain, n: int, rng: random.Random) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        words = ["".join(rng.sample(domain.syllables, rng.choice((2, 3)))).capitalize() for _ in range(2)]
        name = domain.name_pattern.format(a=words[0], b=words[1])
        if name not in names:
            names.append(name)
    return names


def _options(attr: Attribute, answer: str, rng: random.Random) -> tuple[tuple[str, ...], int]:
    distractors = rng.sample([v for v in attr.values if v != answer], 3)
    options = distractors + [answer]
    rng.shuffle(options)
    return tuple(options), options.index(answer)


def _ask(form: str, entity: str) -> str:
    text = form.format(e=entity)
    return text[0].upper() + text[1:]


def load(domain_name: str, cfg: DataConfig) -> Task:
    """Generate the facts task for one domain (see the module docstring for what it holds)."""
    if domain_name not in DOMAINS:
        raise UserError(f"facts:{domain_name}: unknown domain; valid domains: {', '.join(DOMAINS)}")
    domain = DOMAINS[domain_name]
    rng = random.Random(f"{domain_name}-{cfg.facts.seed}")
    train, seen, held, qa_held = [], [], [], []
    for entity in _entity_names(domain, cfg.facts.entities, rng):
        for attr in domain.attributes:
            value = rng.choice(attr.values)
            meta = {"fact_id": f"{entity}/{attr.name}", "entity": entity, "attribute": attr.name}
            for form in attr.train_forms:
                train.append(Example(user(_ask(form, entity)), value, dict(meta, kind="qa", split="seen")))
            for form in attr.train_forms:  # one MCQ per training form, each with its own option order
                options, answer = _options(attr, value, rng)
                item = MCQItem(_ask(form, entity), options, answer, dict(meta, split="seen"))
                seen.append(item)
                train.append(mcq_example(item))
            options, answer = _options(attr, value, rng)
            question = _ask(attr.heldout_form, entity)
            held.append(MCQItem(question, options, answer, dict(meta, split="held_out")))
            qa_held.append(Example(user(question), value, dict(meta, kind="qa", split="held_out")))
    return Task(f"facts:{domain_name}", train, mcq={"seen": seen, "held_out": held}, qa={"held_out": qa_held})
