"""Build tests/cache/data/semantic_pairs.jsonl: the labelled set for the semantic cache's threshold.

Each family is a question asked two or three ways ("variants", which must hit one another) about a
slot value; near misses keep the wording and change what the answer depends on: another entity,
another number or date, another programming language, or a negation. Run it to regenerate the
file (deterministic); the tests read the file.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

# (kind of near miss, paraphrase variants, slot values)
FAMILIES: list[tuple[str, list[str], list[str]]] = [
    (
        "entity",
        [
            "What is the capital of {x}?",
            "Which city is the capital of {x}?",
            "Tell me the capital city of {x}.",
        ],
        ["France", "Japan", "Brazil", "Canada", "Kenya", "Australia"],
    ),
    (
        "entity",
        ["Who wrote {x}?", "Who is the author of {x}?", "Which writer wrote the novel {x}?"],
        ["Moby-Dick", "War and Peace", "Pride and Prejudice", "One Hundred Years of Solitude", "Don Quixote"],
    ),
    (
        "entity",
        [
            "What is the population of {x}?",
            "How many people live in {x}?",
            "How large is the population of {x}?",
        ],
        ["Germany", "India", "Nigeria", "Mexico", "Indonesia"],
    ),
    (
        "entity",
        [
            "How do I reset my {x} password?",
            "What are the steps to reset a {x} password?",
            "I forgot my {x} password, how can I reset it?",
        ],
        ["Gmail", "Netflix", "GitHub", "Slack", "Dropbox"],
    ),
    (
        "entity",
        [
            "What are the side effects of {x}?",
            "Which side effects does {x} have?",
            "List the common side effects of {x}.",
        ],
        ["ibuprofen", "aspirin", "paracetamol", "metformin", "amoxicillin"],
    ),
    (
        "entity",
        [
            "Summarize the plot of {x}.",
            "Give me a short summary of the story of {x}.",
            "What happens in {x}? Summarize it.",
        ],
        ["Hamlet", "Macbeth", "Othello", "King Lear", "Romeo and Juliet"],
    ),
    (
        "entity",
        ["What is the boiling point of {x}?", "At what temperature does {x} boil?"],
        ["water", "ethanol", "mercury", "acetone", "nitrogen"],
    ),
    (
        "entity",
        ["How tall is {x}?", "What is the height of {x}?"],
        ["Mount Everest", "the Eiffel Tower", "K2", "the Burj Khalifa", "Mont Blanc"],
    ),
    (
        "number",
        [
            "Convert {x} miles to kilometers.",
            "How many kilometers are {x} miles?",
            "What is {x} miles in km?",
        ],
        ["5", "12", "26", "100", "42"],
    ),
    (
        "number",
        ["What is {x} factorial?", "Compute the factorial of {x}.", "Calculate {x}!"],
        ["5", "7", "10", "12", "6"],
    ),
    (
        "number",
        ["Is {x} a prime number?", "Is the number {x} prime?", "Tell me whether {x} is prime."],
        ["91", "97", "51", "53", "221"],
    ),
    (
        "number",
        ["What is {x} percent of 250?", "Calculate {x}% of 250.", "How much is {x}% of 250?"],
        ["15", "20", "35", "40", "12"],
    ),
    (
        "number",
        ["Give me a recipe for pancakes that serves {x} people.", "How do I make pancakes for {x} people?"],
        ["2", "4", "6", "8", "10"],
    ),
    (
        "date",
        ["What day of the week was {x}?", "Which weekday fell on {x}?", "On what day of the week was {x}?"],
        ["July 4, 1976", "January 1, 2000", "March 15, 2011", "October 31, 1999", "December 25, 1990"],
    ),
    (
        "date",
        ["What major events happened in {x}?", "Which important historical events took place in {x}?"],
        ["1969", "1989", "1945", "2008", "1914"],
    ),
    (
        "date",
        ["Who won the football World Cup in {x}?", "Which country won the FIFA World Cup in {x}?"],
        ["1998", "2002", "2010", "2014", "2022"],
    ),
    (
        "code_language",
        [
            "Write a {x} function that reverses a string.",
            "How do I reverse a string in {x}?",
            "Show me {x} code to reverse a string.",
        ],
        ["Python", "JavaScript", "Go", "Rust", "Java", "C++"],
    ),
    (
        "code_language",
        [
            "How do I read a file line by line in {x}?",
            "What is the way to read a text file one line at a time in {x}?",
        ],
        ["Python", "Java", "Go", "Rust", "Ruby"],
    ),
    (
        "code_language",
        [
            "Write a {x} program that sorts a list of numbers.",
            "Show me how to sort an array of integers in {x}.",
        ],
        ["Python", "C", "Haskell", "Kotlin", "TypeScript"],
    ),
    (
        "code_language",
        ["How do I make an HTTP GET request in {x}?", "Show me code that sends an HTTP GET request in {x}."],
        ["Python", "Node.js", "Go", "C#", "PHP"],
    ),
]

# Negations: (variants of the statement, variants of its negation) — paraphrases within a side,
# near misses across the sides.
NEGATIONS: list[tuple[list[str], list[str]]] = [
    (
        ["Which foods contain gluten?", "What foods have gluten in them?"],
        ["Which foods do not contain gluten?", "What foods are free of gluten?"],
    ),
    (
        ["Is it safe to drink tap water in Mexico City?", "Can I safely drink the tap water in Mexico City?"],
        [
            "Is it unsafe to drink tap water in Mexico City?",
            "Why should I not drink the tap water in Mexico City?",
        ],
    ),
    (
        [
            "Write a SQL query that selects customers who placed an order.",
            "Give me SQL to find customers that have placed orders.",
        ],
        [
            "Write a SQL query that selects customers who never placed an order.",
            "Give me SQL to find customers that have no orders.",
        ],
    ),
    (
        ["List animals that can fly.", "Which animals are able to fly?"],
        ["List animals that cannot fly.", "Which animals are unable to fly?"],
    ),
    (
        ["Why is the sky blue during the day?", "What makes the daytime sky blue?"],
        ["Why is the sky not blue at night?", "What makes the night sky not blue?"],
    ),
    (
        ["Which countries use the euro?", "What countries have the euro as their currency?"],
        ["Which EU countries do not use the euro?", "What EU members have not adopted the euro?"],
    ),
    (
        [
            "Write a regex that matches strings containing digits.",
            "Give me a regular expression for strings that contain a digit.",
        ],
        [
            "Write a regex that matches strings containing no digits.",
            "Give me a regular expression for strings without any digit.",
        ],
    ),
    (
        [
            "Should I include a cover letter with my job application?",
            "Is it a good idea to send a cover letter with a job application?",
        ],
        [
            "Should I leave out a cover letter from my job application?",
            "Is it better not to send a cover letter with a job application?",
        ],
    ),
    (
        ["Which vitamins are fat-soluble?", "What vitamins dissolve in fat?"],
        ["Which vitamins are not fat-soluble?", "What vitamins are water-soluble rather than fat-soluble?"],
    ),
    (
        [
            "How do I enable two-factor authentication on my account?",
            "What are the steps to turn on two-factor authentication?",
        ],
        [
            "How do I disable two-factor authentication on my account?",
            "What are the steps to turn off two-factor authentication?",
        ],
    ),
]


def build(seed: int = 12) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out: list[dict[str, str]] = []
    for kind, variants, values in FAMILIES:
        for value in values:
            for a, b in itertools.combinations(variants, 2):
                out.append(
                    {
                        "a": a.format(x=value),
                        "b": b.format(x=value),
                        "label": "paraphrase",
                        "kind": "paraphrase",
                    }
                )
        for v1, v2 in itertools.combinations(values, 2):
            variant = rng.choice(variants)
            out.append(
                {"a": variant.format(x=v1), "b": variant.format(x=v2), "label": "near_miss", "kind": kind}
            )
    for yes, no in NEGATIONS:
        for side in (yes, no):
            out.append({"a": side[0], "b": side[1], "label": "paraphrase", "kind": "paraphrase"})
        for a, b in itertools.product(yes, no):
            out.append({"a": a, "b": b, "label": "near_miss", "kind": "negation"})
    return out


def main() -> None:
    path = Path(__file__).parent / "data" / "semantic_pairs.jsonl"
    pairs = build()
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    counts: dict[str, int] = {}
    for p in pairs:
        counts[p["kind"]] = counts.get(p["kind"], 0) + 1
    print(len(pairs), counts)


if __name__ == "__main__":
    main()
