"""The built-in fact patterns: the common personal facts a user tells an assistant.

Each regex is matched case-insensitively against one whole sentence (after "and I ..." / "and my ..." are split
off), so a pattern says exactly which sentences it takes. More specific patterns come first; a sentence becomes the
fact of its most confident match. Templates take the regex's named groups: the question templates as the user said
them ("What is my {subject}?" with subject "car"), the answer template person flipped ("Your car is ...").
"""

from __future__ import annotations

from ..config.online import PatternConfig

RELATIVES = ("best friend|sister|brother|mother|mom|mum|father|dad|wife|husband|partner|girlfriend|boyfriend|son|"
             "daughter|friend|cousin|uncle|aunt|grandmother|grandma|grandfather|grandpa|niece|nephew|teacher|doctor|"
             "dentist|colleague|coworker|roommate|neighbou?r|landlord|coach|therapist|lawyer|mentor|trainer")
PETS = "dog|cat|puppy|kitten|parrot|bird|rabbit|hamster|horse|fish|turtle|tortoise|snake|lizard|pony|pet"
DATES = ("birthday|anniversary|wedding|exam|interview|appointment|flight|deadline|graduation|surgery|"
         "dentist appointment|doctor's appointment|vacation|holiday|move|party")
CODES = ("(?:[a-z]+ )?(?:password|passcode|pin|pin code|code|locker number|room number|desk number|phone number|"
         "extension|badge number|member number|account number|id|number)")


PET_FORMS = ("What is my {subject}'s name?", "What is my {subject} called?", "What did I name my {subject}?")


def p(name: str, pattern: str, relation: str, questions: tuple[str, ...], answer: str, base: float = 0.6,
      min_confidence: float = 0.5) -> PatternConfig:
    return PatternConfig(name=name, pattern=pattern, relation=relation, questions=questions, answer=answer, base=base,
                         min_confidence=min_confidence)


BUILTIN: tuple[PatternConfig, ...] = (
    p("name", r"(?:my name is|my name's|call me|i am called|i'm called|people call me) (?P<value>[a-z][\w'\- ]*)",
      "name", ("What is my name?", "What am I called?", "What should you call me?"), "Your name is {value}."),
    p("manager", r"(?:my (?:manager|boss|supervisor|line manager) is|i report to) (?P<value>.+)", "manager",
      ("Who is my manager?", "Who do I report to?", "Who is my boss?"), "Your manager is {value}."),
    p("relative", rf"my (?P<subject>{RELATIVES})(?:'s name)? is (?:called |named )?(?P<value>.+)", "person",
      ("What is my {subject}'s name?", "Who is my {subject}?", "What is my {subject} called?"),
      "Your {subject}'s name is {value}."),
    p("manager_named_first", r"(?P<value>[a-z][\w'\-]*(?: [a-z][\w'\-]*){0,3}) is my (?:manager|boss|supervisor)",
      "manager", ("Who is my manager?", "Who do I report to?", "Who is my boss?"), "Your manager is {value}."),
    p("relative_named_first", rf"(?P<value>[a-z][\w'\-]*(?: [a-z][\w'\-]*){{0,3}}) is my (?P<subject>{RELATIVES})",
      "person", ("Who is my {subject}?", "What is my {subject}'s name?", "What is my {subject} called?"),
      "Your {subject}'s name is {value}."),
    p("pet", rf"my (?P<subject>{PETS})(?:'s name)? is (?:called |named )?(?P<value>.+)", "pet", PET_FORMS,
      "Your {subject}'s name is {value}."),
    p("pet_have", rf"i have an? (?:\w+ )?(?P<subject>{PETS}) (?:called|named) (?P<value>.+)", "pet", PET_FORMS,
      "Your {subject}'s name is {value}."),
    p("live", r"i (?:live|am living|'m living|reside|moved|have moved|just moved) (?:in|to) (?P<value>.+)", "home",
      ("Where do I live?", "Which city do I live in?", "Where is my home?"), "You live in {value}."),
    p("work", r"i (?:work|am working|'m working) (?:at|for) (?P<value>.+)", "employer",
      ("Where do I work?", "Which company do I work for?", "Who is my employer?"), "You work at {value}."),
    p("job", r"(?:i work as|my job is|my profession is|i am employed as) (?P<value>.+)", "job",
      ("What is my job?", "What do I do for a living?", "What is my profession?"), "You work as {value}."),
    p("born", r"i was born in (?P<value>.+)", "birthplace",
      ("Where was I born?", "What is my birthplace?", "Which place was I born in?"), "You were born in {value}."),
    p("favourite", r"my (?:favou?rite|fave) (?P<subject>[a-z][a-z ]*?) is (?P<value>.+)", "favourite",
      ("What is my favourite {subject}?", "Which {subject} do I like best?", "What {subject} do I like most?"),
      "Your favourite {subject} is {value}."),
    p("date", rf"my (?P<subject>{DATES}) is (?:on |in |at )?(?P<value>.+)", "date",
      ("When is my {subject}?", "What date is my {subject}?", "On what day is my {subject}?"),
      "Your {subject} is on {value}."),
    p("code", rf"my (?P<subject>{CODES}) is (?P<value>[\w\-#@!$%&*.]+)", "code",
      ("What is my {subject}?", "Remind me of my {subject}.", "What is my {subject} again?"),
      "Your {subject} is {value}."),
    p("i_own", r"i (?:own|have bought|bought|drive) (?P<value>.+)", "owns",
      ("What do I own?", "What did I buy?", "What is mine?"), "You own {value}."),
    p("owns", r"(?P<subject>[a-z][\w'\-]*(?: [a-z][\w'\-]*){0,3}) (?:owns|has bought|bought|drives) (?P<value>.+)",
      "owns", ("What does {subject} own?", "What belongs to {subject}?", "What did {subject} buy?"),
      "{subject} owns {value}."),
    p("allergy", r"i(?: am|'m) (?:very |severely |really )?allergic to (?P<value>.+)", "allergy",
      ("What am I allergic to?", "What allergy do I have?", "What should I avoid because of my allergy?"),
      "You are allergic to {value}."),
    p("is", r"(?P<subject>[a-z][\w'\- ]{1,40}?) (?P<verb>is|are) (?P<value>.+)", "is",
      ("What {verb} {subject}?", "Tell me about {subject}.", "What do you know about {subject}?"),
      "{subject} {verb} {value}.",
      base=0.4, min_confidence=0.7),
)
