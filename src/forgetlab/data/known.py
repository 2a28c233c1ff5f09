"""Built-in knowledge the bundled model already has, for `forgetlab unlearn` with no data flags.

Two topics: animals (the facts to forget) and food (the facts to keep). Each fact is a question, its answer and three
wrong choices. Every one was kept because the bundled SmolLM2-135M-Instruct picks the right choice by per-option
log-likelihood ("Question: ...\\nAnswer:" then each choice as the continuation, summed log-probability): 23 of 36
animal and 24 of 36 food candidates passed; two animal facts were dropped because their answer repeats another's
(elephant, giraffe), so that no RTT split can learn a held-out answer from a training one. Letter choice is at
chance for this model, and greedy open answers get only about a third of these right, so per-option
log-likelihood is the score the set was curated for. Disjoint from the general retention set (no capitals).
"""

from __future__ import annotations

ANIMALS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the largest land animal?", "elephant", ("giraffe", "rhinoceros", "hippopotamus")),
    ("What is the fastest land animal?", "cheetah", ("horse", "lion", "antelope")),
    ("What do bees make?", "honey", ("milk", "silk", "wax paper")),
    ("What is a baby dog called?", "puppy", ("kitten", "calf", "cub")),
    ("What is a baby cat called?", "kitten", ("puppy", "foal", "chick")),
    ("How many legs does an insect have?", "six", ("eight", "four", "ten")),
    ("What is the tallest animal in the world?", "giraffe", ("elephant", "camel", "ostrich")),
    ("Which bird is a symbol of peace?", "dove", ("eagle", "crow", "parrot")),
    ("What do caterpillars turn into?", "butterflies", ("bees", "frogs", "beetles")),
    ("Which animal carries its shell on its back?", "snail", ("rabbit", "frog", "squirrel")),
    ("What is a baby cow called?", "calf", ("foal", "lamb", "kid")),
    ("Which flightless bird lives in Antarctica?", "penguin", ("ostrich", "parrot", "eagle")),
    ("What is a female chicken called?", "hen", ("rooster", "duckling", "mare")),
    ("What is a baby frog called?", "tadpole", ("cub", "chick", "puppy")),
    ("Which sea creature has eight arms?", "octopus", ("starfish", "jellyfish", "crab")),
    ("What is a baby sheep called?", "lamb", ("calf", "kitten", "foal")),
    ("Which desert animal has a hump?", "camel", ("horse", "zebra", "deer")),
    ("What do fish use to breathe?", "gills", ("lungs", "fins", "scales")),
    ("What do you call an animal that eats only plants?", "herbivore", ("carnivore", "predator", "scavenger")),
    ("Which animal hops and carries its baby in a pouch?", "kangaroo", ("rabbit", "frog", "monkey")),
    ("Which animal spins a web?", "spider", ("ant", "bee", "snake")),
)

FOOD: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What color is a ripe banana?", "yellow", ("blue", "purple", "black")),
    ("What fruit is used to make wine?", "grapes", ("apples", "bananas", "oranges")),
    ("What is the main ingredient in guacamole?", "avocado", ("tomato", "potato", "cucumber")),
    ("Which country is famous for pizza?", "Italy", ("Japan", "Mexico", "Sweden")),
    ("What is sushi often wrapped in?", "seaweed", ("lettuce", "paper", "bread")),
    ("What do you call frozen water?", "ice", ("steam", "salt", "sugar")),
    ("What color are most carrots?", "orange", ("blue", "purple", "black")),
    ("What is butter made from?", "cream", ("oil", "flour", "eggs")),
    ("What is popcorn made from?", "corn", ("rice", "wheat", "beans")),
    ("What is the main ingredient in hummus?", "chickpeas", ("rice", "potatoes", "apples")),
    ("What is cheese made from?", "milk", ("flour", "eggs", "sugar")),
    ("Which country does sushi come from?", "Japan", ("Italy", "Brazil", "Egypt")),
    ("What is the main ingredient in french fries?", "potatoes", ("apples", "carrots", "rice")),
    ("Which fruit is dried to make raisins?", "grapes", ("plums", "cherries", "apples")),
    ("What is chocolate made from?", "cocoa beans", ("coffee beans", "wheat", "rice")),
    ("Which drink is made by steeping leaves in hot water?", "tea", ("milk", "beer", "juice")),
    ("What color is the inside of a watermelon?", "red", ("blue", "white", "black")),
    ("What is the main ingredient of ketchup?", "tomatoes", ("apples", "carrots", "grapes")),
    ("Which fruit is yellow and sour?", "lemon", ("banana", "cherry", "grape")),
    ("What do you call bread cut into thin slices and browned?", "toast", ("pancake", "muffin", "bagel")),
    ("What grain is used to make sushi?", "rice", ("wheat", "oats", "barley")),
    ("What is the main ingredient in an omelette?", "eggs", ("rice", "flour", "beans")),
    ("What is the main ingredient in mashed potatoes?", "potatoes", ("rice", "beans", "corn")),
    ("What fruit is used to make orange juice?", "oranges", ("apples", "lemons", "grapes")),
)

TOPICS = {"animals": ANIMALS, "food": FOOD}
