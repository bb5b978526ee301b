"""Write the embedded FLAN-v2 sample (`sample/flan/`), in the DataProvenanceInitiative layout.

Every text here is written for this project (templates and facts of our own), in the real FLAN
export format: `inputs`, `targets`, `task_source`, `task_name`, `template_type`. Task names are
real FLAN task names, so license resolution works on the sample. The sample plants exact
duplicates (same text up to case, spaces and punctuation), near duplicates (a few words changed),
few-shot rows, multiple-choice rows with options, and BIG-Bench-style T0 rows the default
exclusion removes.

Run: `python scripts/make_sample.py sample/flan` (deterministic: same bytes every time).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("inputs", pa.string()),
        ("targets", pa.string()),
        ("task_source", pa.string()),
        ("task_name", pa.string()),
        ("template_type", pa.string()),
    ]
)
SOURCES = {"cot": "CoT", "niv2": "NIv2", "t0": "P3", "flan2021": "Flan2021", "dialog": "Dialog"}

NAMES = [
    "Maria",
    "Tomas",
    "Aiko",
    "Priya",
    "Lukas",
    "Fatima",
    "Diego",
    "Nia",
    "Oskar",
    "Mei",
    "Ravi",
    "Elena",
]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "stamps", "books", "shells"]
CITIES = ["Lisbon", "Nairobi", "Osaka", "Quito", "Tallinn", "Hobart", "Accra", "Porto", "Kraków", "Cusco"]
ANIMALS = ["otter", "heron", "lynx", "gecko", "walrus", "ibis", "marten", "tapir", "newt", "puffin"]
REVIEWS_POS = [
    "The blender crushed ice in seconds and is easy to clean after every smoothie.",
    "Our tent stayed dry through two nights of steady mountain rain.",
    "This novel kept me reading until three in the morning; the ending is perfect.",
    "The headphones are light, the battery lasts all week, and the sound is rich.",
    "Friendly staff, quick delivery, and the bike arrived fully assembled.",
    "The cast iron pan heats evenly and gave my bread a wonderful crust.",
    "I have worn these boots on every hike this year and my feet never ached.",
    "A charming little cafe with the best lemon cake I have tasted in years.",
    "The app finally syncs my calendar across devices without any fuss.",
    "The children loved the puzzle and finished it together over a weekend.",
]
REVIEWS_NEG = [
    "The kettle started leaking after a week and the seller never replied.",
    "Half of the screws were missing, so the shelf is still in its box.",
    "The plot drags for two hundred pages and the characters feel flat.",
    "My phone case cracked the first time it fell from a kitchen table.",
    "The hotel room smelled of smoke and the air conditioner rattled all night.",
    "The vacuum loses suction after five minutes and the filter clogs constantly.",
    "Customer service kept me on hold for an hour and then hung up.",
    "The paint peeled off the garden chairs before the summer was over.",
    "The printer refuses to connect to wifi no matter what I try.",
    "The soup was cold, the bread was stale, and we waited forty minutes.",
]
FACTS = [
    (
        "The heart pumps blood through the body.",
        "Which organ pumps blood through the body?",
        "the heart",
        ["the lungs", "the heart", "the liver", "the kidneys"],
    ),
    (
        "Plants make their food by photosynthesis using sunlight.",
        "What process do plants use to make food?",
        "photosynthesis",
        ["respiration", "digestion", "photosynthesis", "evaporation"],
    ),
    (
        "Water boils at 100 degrees Celsius at sea level.",
        "At what temperature does water boil at sea level?",
        "100 degrees Celsius",
        ["50 degrees Celsius", "100 degrees Celsius", "0 degrees Celsius", "212 degrees Celsius"],
    ),
    (
        "The moon orbits the Earth roughly once every 27 days.",
        "What does the moon orbit?",
        "the Earth",
        ["the Sun", "Mars", "the Earth", "Jupiter"],
    ),
    (
        "Magnets attract objects made of iron.",
        "What kind of objects do magnets attract?",
        "objects made of iron",
        ["objects made of wood", "objects made of iron", "objects made of glass", "objects made of plastic"],
    ),
    (
        "Bees carry pollen from flower to flower.",
        "What do bees carry between flowers?",
        "pollen",
        ["seeds", "pollen", "water", "soil"],
    ),
    (
        "Sound travels faster in water than in air.",
        "Where does sound travel faster, in water or in air?",
        "in water",
        ["in air", "in water", "in a vacuum", "at the same speed"],
    ),
    (
        "Ice is the solid form of water.",
        "What is ice?",
        "the solid form of water",
        ["a gas", "the solid form of water", "a kind of salt", "a metal"],
    ),
    (
        "Fossils form when remains are buried in sediment.",
        "How do fossils usually form?",
        "remains are buried in sediment",
        [
            "remains are frozen in air",
            "remains are buried in sediment",
            "remains dissolve in rain",
            "remains are eaten",
        ],
    ),
    (
        "Mammals feed their young with milk.",
        "What do mammals feed their young?",
        "milk",
        ["seeds", "milk", "nectar", "sand"],
    ),
    (
        "The Sahara is a large desert in northern Africa.",
        "Where is the Sahara desert?",
        "northern Africa",
        ["South America", "northern Africa", "Australia", "Europe"],
    ),
    (
        "Copper is a good conductor of electricity.",
        "Which material conducts electricity well?",
        "copper",
        ["rubber", "copper", "wood", "glass"],
    ),
    (
        "Owls hunt mostly at night.",
        "When do owls mostly hunt?",
        "at night",
        ["at noon", "at night", "only in winter", "never"],
    ),
    (
        "A thermometer measures temperature.",
        "What does a thermometer measure?",
        "temperature",
        ["weight", "temperature", "distance", "time"],
    ),
    (
        "Volcanoes can form new land when lava cools.",
        "What can form new land when it cools?",
        "lava",
        ["snow", "lava", "sand", "clouds"],
    ),
    (
        "Earthworms loosen the soil as they burrow.",
        "What loosens soil as it burrows?",
        "earthworms",
        ["eagles", "earthworms", "sharks", "cows"],
    ),
]
LETTERS = "ABCDE"


def row(submix: str, task: str, template: str, inputs: str, targets: str) -> dict[str, str]:
    return {
        "inputs": inputs,
        "targets": targets,
        "task_source": SOURCES[submix],
        "task_name": task,
        "template_type": template,
    }


def options_block(opts: list[str]) -> str:
    return "OPTIONS:\n" + "\n".join(f"- {o}" for o in opts)


def lettered(opts: list[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(opts))


def few_shot(exemplars: list[tuple[str, str]], query: str) -> str:
    shots = "\n\n".join(f"{q}\n{a}" for q, a in exemplars)
    return f"{shots}\n\n{query}"


# --- CoT -------------------------------------------------------------------------------------


def cot_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i in range(30):
        name, item = NAMES[i % len(NAMES)], ITEMS[i % len(ITEMS)]
        a, b, c = 10 + 3 * i, 2 + i % 7, 4 + (i * 5) % 11
        q = (
            f"{name} has {a} {item}. {name} gives {b} {item} to a friend and then buys {c} more. "
            f"How many {item} does {name} have now?"
        )
        ans = (
            f"{name} starts with {a} {item}. After giving away {b}, {name} has {a} - {b} = {a - b}. "
            f"Buying {c} more gives {a - b} + {c} = {a - b + c}. The answer is {a - b + c}."
        )
        tt = "fs_noopt" if i % 5 == 4 else "zs_noopt"
        inputs = f"Answer the following question step by step.\n{q}"
        if tt.startswith("fs"):
            inputs = few_shot(
                [
                    (
                        "Question: Tom has 3 cars and gets 2 more. How many cars?",
                        "Answer: 3 + 2 = 5. The answer is 5.",
                    )
                ],
                f"Question: {q}\nAnswer:",
            )
        rows.append(row("cot", "cot_gsm8k", tt, inputs, ans))
    claims = [
        (
            "Could a penguin survive a summer afternoon in the Sahara without shade?",
            "no",
            "Penguins are adapted to cold water and air; desert heat above 40 degrees would overwhelm them.",
        ),
        (
            "Would a single grape fill a bathtub?",
            "no",
            "A grape holds a few millilitres; a bathtub holds many litres.",
        ),
        (
            "Can a person read a book printed in Braille with their fingers?",
            "yes",
            "Braille is a system of raised dots designed to be read by touch.",
        ),
        (
            "Is it possible to walk from Lisbon to Madrid?",
            "yes",
            "Both cities are on the Iberian Peninsula and connected by land.",
        ),
        (
            "Did people watch television in the year 1700?",
            "no",
            "Television was invented in the twentieth century.",
        ),
        (
            "Would a walrus fit inside a standard kitchen refrigerator?",
            "no",
            "An adult walrus weighs more than a tonne and is far larger than a refrigerator.",
        ),
        (
            "Can bamboo grow more than half a metre in one day?",
            "yes",
            "Some bamboo species are among the fastest growing plants and can grow that much daily.",
        ),
        (
            "Is the Pacific Ocean smaller than Lake Geneva?",
            "no",
            "The Pacific is the largest ocean; Lake Geneva is a lake in Europe.",
        ),
        ("Could a hummingbird carry a bowling ball?", "no", "A hummingbird weighs a few grams."),
        (
            "Do cacti store water in their stems?",
            "yes",
            "Cactus stems are thick and store water for dry periods.",
        ),
        (
            "Can a violin be played with a bow?",
            "yes",
            "Violins are string instruments usually played with a bow.",
        ),
        (
            "Would an ice cube stay frozen in a hot oven for an hour?",
            "no",
            "An oven is far above the melting point of ice.",
        ),
        ("Is a tomato botanically a fruit?", "yes", "A tomato develops from a flower and contains seeds."),
        ("Could a goldfish climb a tree?", "no", "Goldfish live in water and have no limbs for climbing."),
    ]
    for i, (q, a, why) in enumerate(claims):
        rows.append(
            row(
                "cot",
                "cot_strategyqa",
                "zs_opt",
                f"{q}\nThink carefully first, then make a decision:\n{options_block(['yes', 'no'])}",
                f"{why} So, the answer is {a}.",
            )
        )
    for i, (fact, q, a, opts) in enumerate(FACTS):
        opts = list(opts)
        rng.shuffle(opts)
        letter = LETTERS[opts.index(a)]
        inputs = f"{q}\n{lettered(opts)}\nLet's think step by step to find the right choice."
        rows.append(
            row("cot", "cot_qasc", "zs_opt", inputs, f"{fact} Therefore the answer is ({letter}) {a}.")
        )
    sentences = [
        ("A man is playing a guitar on a stage.", "A person is making music.", "yes"),
        ("Two dogs run across a snowy field.", "The animals are sleeping indoors.", "no"),
        (
            "A girl in a red coat rides a bicycle.",
            "The girl is going to school.",
            "it is not possible to tell",
        ),
        ("A chef slices onions in a busy kitchen.", "Someone is preparing food.", "yes"),
        ("An old woman feeds pigeons in a square.", "The woman is swimming.", "no"),
        ("Children build a sandcastle near the waves.", "The children are at a beach.", "yes"),
        ("A man waits at a bus stop holding an umbrella.", "It is raining.", "it is not possible to tell"),
        ("Three friends share a pizza at a table.", "Nobody is eating.", "no"),
        ("A climber reaches the top of a rocky cliff.", "A person is outdoors.", "yes"),
        ("A boy reads a comic book on a train.", "The boy is on his way home.", "it is not possible to tell"),
        ("A woman paints a mural on a brick wall.", "A wall is being decorated.", "yes"),
        ("A cat sleeps on a sunny windowsill.", "The cat is chasing a mouse.", "no"),
    ]
    nli_opts = ["yes", "it is not possible to tell", "no"]
    for i, (p, h, a) in enumerate(sentences):
        tt = "fs_opt" if i % 4 == 3 else "zs_opt"
        q = (
            f'Premise: "{p}"\nHypothesis: "{h}"\nDo we know that the hypothesis entailed by the premise?\n'
            f"{options_block(nli_opts)}"
        )
        inputs = (
            q
            if tt == "zs_opt"
            else few_shot(
                [
                    (
                        'Premise: "A dog swims."\nHypothesis: "An animal is in water."\nDo we know that the hypothesis '
                        "entailed by the premise?",
                        "A swimming dog is in water. The answer is yes.",
                    )
                ],
                q,
            )
        )
        rows.append(
            row("cot", "cot_esnli", tt, inputs, f"Reasoning from the premise alone, the answer is {a}.")
        )
    creak = [
        ("The Eiffel Tower stands in Paris.", "yes"),
        ("Penguins are native to the Arctic.", "no"),
        ("Mount Everest is the tallest mountain above sea level.", "yes"),
        ("The violin has eighty strings.", "no"),
        ("Honey is made by bees.", "yes"),
        ("The Amazon river flows through Brazil.", "yes"),
        ("Sharks are a kind of bird.", "no"),
        ("Chess is played on a board of sixty-four squares.", "yes"),
        ("The sun rises in the west.", "no"),
        ("Tokyo is the capital of Japan.", "yes"),
    ]
    for claim, a in creak:
        rows.append(
            row(
                "cot",
                "cot_creak",
                "zs_opt",
                f'Is the following sentence factually correct?\n"{claim}"\n{options_block(["yes", "no"])}',
                f"This is common knowledge. The answer is {a}.",
            )
        )
    aqua = []
    for i in range(10):
        speed, hours = 30 + 5 * i, 2 + i % 4
        dist = speed * hours
        opts = [str(dist - 10), str(dist), str(dist + 15), str(dist * 2), str(dist + 40)]
        aqua.append(
            (
                f"A train travels at {speed} km per hour for {hours} hours. How far does it travel?",
                opts,
                1,
                f"Distance = speed x time = {speed} x {hours} = {dist} km.",
            )
        )
    for q, opts, k, why in aqua:
        rows.append(
            row(
                "cot",
                "stream_aqua",
                "zs_opt",
                f"{q}\nOptions:\n{lettered(opts)}\nStream of consciousness first, then answer.",
                f"{why} So the answer is ({LETTERS[k]}).",
            )
        )
    sense = [
        ("He put the milk in the fridge.", "He put the elephant in the fridge."),
        ("She wore sunglasses on a bright day.", "She wore sunglasses to hear better."),
        ("The baker baked bread in the oven.", "The baker baked bread in the freezer."),
        ("We watered the plants so they would grow.", "We watered the plants so they would fly."),
        ("He used a key to open the door.", "He used a banana to open the door."),
        ("The pilot landed the plane on the runway.", "The pilot landed the plane in a teacup."),
        ("I wrote a letter with a pen.", "I wrote a letter with a spoon of soup."),
        ("She dried her hair with a towel.", "She dried her hair with a bucket of water."),
    ]
    for a, b in sense:
        rows.append(
            row(
                "cot",
                "cot_sensemaking",
                "zs_opt",
                f"Which of these sentences doesn't make sense?\n{options_block([a, b])}",
                f"The second one is against common sense. The answer is: {b}",
            )
        )
    # planted exact duplicate (case, whitespace and punctuation differ) and a near duplicate
    src = rows[2]
    rows.append(
        row(
            "cot",
            "cot_gsm8k_ii",
            src["template_type"],
            "  " + src["inputs"].upper().replace("?", " ?").replace(".", "") + "  ",
            src["targets"],
        )
    )
    src = rows[3]
    rows.append(
        row(
            "cot",
            "cot_gsm8k",
            src["template_type"],
            src["inputs"].replace("a friend", "a classmate").replace("buys", "purchases"),
            src["targets"],
        )
    )
    return rows


# --- NIV2 ------------------------------------------------------------------------------------


def niv2_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    definition = (
        "Definition: In this task, you are given a premise and a hypothesis. Decide whether the "
        "hypothesis is entailed by, contradicts, or is neutral to the premise. Answer with one word."
    )
    pairs = [
        ("The museum opens at nine every morning.", "The museum is closed all day.", "contradiction"),
        ("A farmer harvests wheat in late summer.", "Wheat is harvested by a farmer.", "entailment"),
        ("The team trained for months before the final.", "The team won the final.", "neutral"),
        ("Rain flooded the streets of the old town.", "The streets were wet.", "entailment"),
        (
            "The author signed copies of her new book.",
            "The author has never written a book.",
            "contradiction",
        ),
        ("A student borrowed three novels from the library.", "The student likes reading.", "neutral"),
        ("The bridge was closed for repairs in May.", "Nobody could cross the bridge in May.", "entailment"),
        (
            "The orchestra tuned their instruments quietly.",
            "The orchestra was silent all evening.",
            "contradiction",
        ),
        ("The bakery sells bread baked before sunrise.", "The bakery sells cakes.", "neutral"),
        ("A storm knocked down power lines overnight.", "Some homes may have lost power.", "entailment"),
    ]
    for p, h, a in pairs:
        rows.append(
            row(
                "niv2",
                "task1385_anli_r1_entailment",
                "zs_noopt",
                f"{definition}\n\nPremise: {p}\nHypothesis: {h}\nOutput:",
                a,
            )
        )
    for i, (_fact, q, a, opts) in enumerate(FACTS[:12]):
        opts = list(opts)
        rng.shuffle(opts)
        rows.append(
            row(
                "niv2",
                "task228_arc_answer_generation_easy",
                "zs_noopt",
                "Definition: In this task, you are given a science question. Write the correct answer in "
                f"a short phrase.\n\nInput: {q}\nOutput:",
                a,
            )
        )
    news = [
        ("Central bank raises interest rates to curb inflation", "Business"),
        ("Local club wins regional football championship after penalties", "Sports"),
        ("New telescope captures images of distant galaxy cluster", "Sci/Tech"),
        ("Leaders meet to discuss border agreement and trade", "World"),
        ("Chip maker unveils faster processor for laptops", "Sci/Tech"),
        ("Marathon runner sets course record in windy conditions", "Sports"),
        ("Retail sales climb as holiday shopping starts early", "Business"),
        ("Parliament votes on new climate legislation", "World"),
        ("Startup raises funds to build battery recycling plant", "Business"),
        ("Tennis star returns from injury with straight-sets win", "Sports"),
    ]
    for i, (title, label) in enumerate(news):
        tt = "fs_noopt" if i % 5 == 4 else "zs_noopt"
        q = f"Input: {title}\nOutput:"
        head = (
            "Definition: Classify the news headline into one of four topics: World, Sports, Business, "
            "Sci/Tech.\n\n"
        )
        inputs = head + (
            q
            if tt == "zs_noopt"
            else few_shot([("Input: Striker scores twice in derby\nOutput:", "Sports")], q)
        )
        rows.append(row("niv2", "task1541_agnews_classification", tt, inputs, label))
    comments = [
        ("You are an idiot and nobody wants you here.", "Toxic"),
        ("Thanks for the detailed answer, it helped a lot.", "Non-toxic"),
        ("This policy will cost taxpayers more than it saves.", "Non-toxic"),
        ("Shut up, you worthless clown.", "Toxic"),
        ("I disagree, but I see why people like the plan.", "Non-toxic"),
        ("Great photos of the coastline, where was this taken?", "Non-toxic"),
        ("Go away, loser, nobody asked you.", "Toxic"),
        ("The council should publish the budget earlier.", "Non-toxic"),
    ]
    for text, label in comments:
        rows.append(
            row(
                "niv2",
                "task1720_civil_comments_toxicity_classification",
                "zs_noopt",
                "Definition: Categorize the comment on the basis of toxicity. If the comment is toxic "
                f"(harmful, malicious, derogatory, threat, insult) output Toxic, otherwise Non-toxic.\n\n"
                f"Comment: {text}\nOutput:",
                label,
            )
        )
    for i in range(10):
        speed, hours = 40 + 7 * i, 3 + i % 3
        dist = speed * hours
        opts = [str(dist + 5), str(dist - 20), str(dist), str(dist + 60), str(dist * 3)]
        rows.append(
            row(
                "niv2",
                "task750_aqua_multiple_choice_answering",
                "zs_opt",
                "Definition: Answer the math word problem by choosing one of the options.\n\n"
                f"Input: A cyclist rides at {speed} km per hour for {hours} hours. What distance is covered?"
                f"\nOptions: {lettered(opts)}\nOutput:",
                LETTERS[2],
            )
        )
    passages = [
        (
            "Aiko moved to Osaka to study architecture. Her brother Kenji stayed in the village to run the farm.",
            "Who stayed in the village?",
            "Kenji",
        ),
        (
            "The lighthouse keeper, Ms. Adeyemi, kept a diary of every ship that passed the cape.",
            "What did the lighthouse keeper record?",
            "every ship that passed the cape",
        ),
        (
            "After the flood, Diego rebuilt the bakery with help from his neighbours.",
            "Who helped Diego rebuild?",
            "his neighbours",
        ),
        (
            "Priya trained her dog Biscuit to fetch the newspaper every morning.",
            "What is the name of Priya's dog?",
            "Biscuit",
        ),
        (
            "The expedition led by Oskar reached the glacier after nine days of walking.",
            "How long did the expedition walk?",
            "nine days",
        ),
        (
            "Elena repaired old clocks in a small shop near the harbour in Porto.",
            "Where was Elena's shop?",
            "near the harbour in Porto",
        ),
    ]
    for p, q, a in passages:
        rows.append(
            row(
                "niv2",
                "task002_quoref_answer_generation",
                "zs_noopt",
                "Definition: Read the passage and answer the question with a span from the passage.\n\n"
                f"Passage: {p}\nQuestion: {q}\nOutput:",
                a,
            )
        )
        rows.append(
            row(
                "niv2",
                "task075_squad1.1_answer_generation",
                "zs_noopt",
                "Definition: You are given a passage and a question about it. Answer with the shortest "
                f"span of the passage that answers the question.\n\nContext: {p}\nQuestion: {q}\nAnswer:",
                a,
            )
        )
        rows.append(
            row(
                "niv2",
                "task001_quoref_question_generation",
                "zs_noopt",
                "Definition: Read the passage and write a question whose answer is a person or thing "
                f"mentioned in it.\n\nPassage: {p}\nOutput:",
                q,
            )
        )
    for text in REVIEWS_POS[:5] + REVIEWS_NEG[:5]:
        label = "positive" if text in REVIEWS_POS else "negative"
        rows.append(
            row(
                "niv2",
                "task284_imdb_classification",
                "zs_noopt",
                "Definition: Classify the sentiment of the review as positive or negative.\n\n"
                f"Review: {text}\nOutput:",
                label,
            )
        )
    # planted near duplicate: same premise with two words changed
    src = rows[0]
    rows.append(
        row(
            "niv2",
            "task1385_anli_r1_entailment",
            "zs_noopt",
            src["inputs"].replace("nine every morning", "ten every morning"),
            src["targets"],
        )
    )
    return rows


# --- T0 --------------------------------------------------------------------------------------


def t0_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i, city in enumerate(CITIES):
        animal = ANIMALS[i]
        ctx = (
            f"The coastal city of {city} hosts a small research station that studies the {animal}. "
            f"Volunteers count the animals every spring and publish the numbers each autumn."
        )
        rows.append(
            row(
                "t0",
                "adversarial_qa_dbidaf_answer_the_following_q",
                "zs_noopt",
                f'Given the following passage\n\n"{ctx}",\n\nanswer the following question. Note that '
                f"the answer is present within the text.\n\nQuestion: What animal does the station in "
                f"{city} study?",
                f"the {animal}",
            )
        )
    cos = [
        ("Where would you put a plate after washing it?", ["cupboard", "oven", "garden", "car", "bed"], 0),
        ("What do people use to cut paper?", ["spoon", "scissors", "pillow", "lamp", "rope"], 1),
        ("Where do you usually find a pillow?", ["bed", "fridge", "river", "road", "bank"], 0),
        ("What do you need to see in the dark?", ["sugar", "light", "salt", "paper", "glue"], 1),
        ("Where might a child keep toys?", ["toy box", "sink", "mailbox", "engine", "tree"], 0),
        ("What would you wear on your feet in the snow?", ["boots", "gloves", "hat", "scarf", "belt"], 0),
        ("What do you use to write on a blackboard?", ["chalk", "soap", "bread", "coin", "leaf"], 0),
        ("Where does a pilot work?", ["cockpit", "kitchen", "library", "farm", "prison"], 0),
        ("What helps a plant grow?", ["sunlight", "plastic", "noise", "smoke", "sand"], 0),
        ("Where would you buy fresh fish?", ["market", "desert", "cinema", "attic", "school"], 0),
    ]
    for q, opts, k in cos:
        rows.append(
            row(
                "t0",
                "cos_e_v1.11_question_option_description_text",
                "zs_opt",
                f"Pick the option in line with common sense to answer the question.\nQuestion: {q}\n"
                f"{options_block(opts)}",
                opts[k],
            )
        )
    cats = [
        "Company",
        "Educational Institution",
        "Artist",
        "Athlete",
        "Office Holder",
        "Mean Of Transportation",
        "Building",
        "Natural Place",
        "Village",
        "Animal",
        "Plant",
        "Album",
        "Film",
        "Written Work",
    ]
    dbp = [
        (
            "Harbourline Ferries",
            "Harbourline Ferries is a shipping company that runs boats between two islands.",
            "Company",
        ),
        (
            "Mount Ardel",
            "Mount Ardel is a volcanic peak covered by pine forest and glaciers.",
            "Natural Place",
        ),
        (
            "Velloria",
            "Velloria is a small village in the hills with a population of four hundred.",
            "Village",
        ),
        (
            "The Glass Orchard",
            "The Glass Orchard is a novel about three sisters who run a greenhouse.",
            "Written Work",
        ),
        ("Redwing Kite", "The redwing kite is a bird of prey found in open grassland.", "Animal"),
        (
            "Silver Fern Academy",
            "Silver Fern Academy is a secondary school founded in 1921.",
            "Educational Institution",
        ),
        ("Moonlit Harbour", "Moonlit Harbour is the third studio album by a folk band.", "Album"),
        ("Tessa Marlow", "Tessa Marlow is a sprinter who won two medals at the national games.", "Athlete"),
    ]
    for title, text, label in dbp:
        rows.append(
            row(
                "t0",
                "dbpedia_14_given_a_choice_of_categories_",
                "zs_opt",
                f"{title}. {text} Given a choice of categories {', '.join(cats)}, the text refers to which "
                "one?",
                label,
            )
        )
    for i in range(10):
        name, city = NAMES[i], CITIES[i]
        plot = (
            f"{name}, a retired detective in {city}, is drawn back into one last case when a painting "
            f"vanishes from the city museum on the night of the festival."
        )
        rows.append(
            row(
                "t0",
                "duorc_SelfRC_question_answering",
                "zs_noopt",
                f"Question: Who investigates the missing painting?\nIf there is no answer, please output "
                f'"Insufficient information to provide an answer.".\nMovie title: The {city} Affair\n'
                f"Context: {plot}",
                name,
            )
        )
    for i in range(6):
        a, b = NAMES[i], NAMES[i + 1]
        dialog = (
            f"{a}: Are you coming to the market on Saturday?\n{b}: I can't, I have to visit my aunt.\n"
            f"{a}: Then let's go on Sunday instead."
        )
        rows.append(
            row(
                "t0",
                "dream_baseline",
                "zs_opt",
                f"Dialogue:\n{dialog}\nQuestion: Why can't {b} go on Saturday?\n"
                f"{options_block(['visiting an aunt', 'working late', 'feeling ill'])}",
                "visiting an aunt",
            )
        )
    quartz = [
        (
            "A heavier object needs more force to move.",
            "Which needs more force to move, a truck or a bicycle?",
            ["truck", "bicycle"],
            "truck",
        ),
        (
            "Warmer water dissolves more sugar.",
            "Will hot tea or iced tea dissolve more sugar?",
            ["hot tea", "iced tea"],
            "hot tea",
        ),
        (
            "Longer wires have more resistance.",
            "Which has more resistance, a long wire or a short wire?",
            ["long wire", "short wire"],
            "long wire",
        ),
        (
            "Sound gets quieter as you move away from its source.",
            "Is a bell louder when you stand near it or far from it?",
            ["near it", "far from it"],
            "near it",
        ),
        (
            "Higher altitudes have thinner air.",
            "Is the air thinner at sea level or on a mountain top?",
            ["sea level", "mountain top"],
            "mountain top",
        ),
        (
            "More surface area makes things cool faster.",
            "Will soup cool faster in a wide bowl or a narrow cup?",
            ["wide bowl", "narrow cup"],
            "wide bowl",
        ),
    ]
    for fact, q, opts, a in quartz:
        rows.append(
            row(
                "t0",
                "quartz_given_the_fact_answer_the_q",
                "zs_opt",
                f"Given the fact that:\n\n{fact}\n\nAnswer the question:\n\n{q}\n{options_block(opts)}",
                a,
            )
        )
    for text in REVIEWS_POS[5:] + REVIEWS_NEG[5:]:
        label = "Yes" if text in REVIEWS_POS else "No"
        rows.append(
            row(
                "t0",
                "amazon_polarity_Is_this_review",
                "zs_opt",
                f"Title: my honest opinion\nReview: {text}\nIs the review positive?\n"
                f"{options_block(['No', 'Yes'])}",
                label,
            )
        )
    wiqa = [
        ("more rain falls", "the river rises", "more"),
        ("the sun is hidden by clouds", "plants make less food", "more"),
        ("fewer bees visit the orchard", "more apples grow", "less"),
        ("the oven is hotter", "the bread bakes faster", "more"),
        ("the wind stops", "the windmill turns faster", "less"),
        ("the soil has more nutrients", "the crops grow taller", "more"),
    ]
    for cause, effect, a in wiqa:
        rows.append(
            row(
                "t0",
                "wiqa_effect_with_string_answer",
                "zs_opt",
                f"Process: a chain of natural events.\nQuestion: suppose {cause} happens, how will it affect "
                f"{effect}?\n{options_block(['more', 'less', 'no effect'])}",
                a,
            )
        )
    # BIG-Bench tasks sit in T0; Orca keeps them out (BBH is an evaluation set)
    for i in range(4):
        rows.append(
            row(
                "t0",
                "bigbench_logical_deduction",
                "zs_opt",
                f"On a shelf there are three books: red, green and blue. The red book is left of the "
                f"green one, and the blue book is the rightmost. Which book is leftmost? (variant {i})\n"
                f"{options_block(['red', 'green', 'blue'])}",
                "red",
            )
        )
        rows.append(
            row(
                "t0",
                "bigbench_date_understanding",
                "zs_opt",
                f"Today is 3 March 2021. What was the date {i + 1} days ago?\n"
                f"{options_block([f'{2 - i % 2} March 2021', f'{28 - i} February 2021', '5 March 2021'])}",
                f"{2 - i % 2} March 2021",
            )
        )
    # exact duplicates: the same row twice (same id, dropped by `prompts`), and one differing only in case/space
    rows.append(dict(rows[0]))
    src = rows[12]
    rows.append(
        row(
            "t0",
            "cos_e_v1.11_question_option_description_text",
            src["template_type"],
            src["inputs"].lower().replace("\n", " \n "),
            src["targets"],
        )
    )
    return rows


# --- Flan 2021 -------------------------------------------------------------------------------


def flan2021_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i, text in enumerate(REVIEWS_POS + REVIEWS_NEG):
        label = "positive" if text in REVIEWS_POS else "negative"
        tt = ("zs_opt", "zs_noopt", "fs_opt", "zs_opt")[i % 4]
        if tt.endswith("noopt"):
            inputs = f'Sentence: "{text}"\nWhat is the sentiment of this sentence?'
        else:
            inputs = f'"{text}"\nHow would the sentiment of this sentence be perceived?\n' + options_block(
                ["negative", "positive"]
            )
            if tt.startswith("fs"):
                inputs = few_shot(
                    [
                        (
                            '"A dull, lifeless film."\nHow would the sentiment of this sentence be '
                            "perceived?\nOPTIONS:\n- negative\n- positive",
                            "negative",
                        )
                    ],
                    inputs,
                )
        rows.append(row("flan2021", "glue/sst2:2.0.0", tt, inputs, label))
    for i, (fact, q, a, opts) in enumerate(FACTS):
        opts = list(opts)
        rng.shuffle(opts)
        rows.append(
            row(
                "flan2021",
                "ai2_arc/ARC-Easy:1.0.0",
                "zs_opt",
                f"Question: {q}\n{options_block(opts)}\nAnswer:",
                a,
            )
        )
        rows.append(
            row(
                "flan2021",
                "openbookqa:0.1.0",
                "zs_opt" if i % 3 else "zs_noopt",
                f"{fact.split(' ')[0]} {' '.join(fact.split(' ')[1:])} Using this fact, answer: {q}"
                + (f"\n{options_block(opts)}" if i % 3 else ""),
                a,
            )
        )
    trec = [
        ("How far is it from Lisbon to Porto?", "numeric value"),
        ("Who painted the ceiling of the chapel?", "human being"),
        ("What is a tapir?", "description and abstract concept"),
        ("Where is Hobart?", "location"),
        ("What does the abbreviation UNESCO stand for?", "abbreviation"),
        ("What kind of animal is a newt?", "entity"),
        ("When did the bridge in Tallinn open?", "numeric value"),
        ("Who wrote the first cookbook in Quito?", "human being"),
        ("Why do herons stand on one leg?", "description and abstract concept"),
        ("Which river flows through Kraków?", "location"),
    ]
    trec_opts = [
        "description and abstract concept",
        "entity",
        "abbreviation",
        "human being",
        "numeric value",
        "location",
    ]
    for q, label in trec:
        rows.append(
            row(
                "flan2021",
                "trec:1.0.0",
                "zs_opt",
                f'What type of thing is the question "{q}" asking about?\n{options_block(trec_opts)}\n'
                "Answer:",
                label,
            )
        )
    copa = [
        ("The road was icy.", "What happened as a result?", ["The car skidded.", "The car was washed."], 0),
        (
            "The girl found a coin on the pavement.",
            "What happened as a result?",
            ["She picked it up.", "She went to sleep."],
            0,
        ),
        ("The lights went out.", "What was the cause?", ["The power failed.", "The sun rose."], 0),
        ("My shirt was wrinkled.", "What happened as a result?", ["I ironed it.", "I ate it."], 0),
        ("The crowd cheered.", "What was the cause?", ["The team scored.", "The stadium was empty."], 0),
        ("The plant wilted.", "What was the cause?", ["It was not watered.", "It was painted."], 0),
        ("He missed the bus.", "What happened as a result?", ["He walked to work.", "He grew taller."], 0),
        ("The ice cream melted.", "What was the cause?", ["It was left in the sun.", "It was frozen."], 0),
    ]
    for prem, q, opts, k in copa:
        rows.append(
            row(
                "flan2021",
                "super_glue/copa:1.0.2",
                "zs_opt",
                f"Premise: {prem}\n{q}\n{options_block(opts)}",
                opts[k],
            )
        )
    for i, (prem, hyp, lab) in enumerate(
        [
            ("The violinist practised scales for an hour.", "The violinist rested all day.", "no"),
            ("A crowd gathered to watch the fireworks.", "People watched a show.", "yes"),
            ("The ferry left the harbour at dawn.", "The ferry was late.", "it is not possible to tell"),
            ("The gardener planted tulips along the fence.", "Flowers were planted.", "yes"),
            ("The climber fell asleep in the tent.", "The climber was awake.", "no"),
            (
                "Two chefs cooked a meal for the wedding.",
                "The meal was delicious.",
                "it is not possible to tell",
            ),
        ]
    ):
        rows.append(
            row(
                "flan2021",
                "anli/r1:0.1.0",
                "zs_opt",
                f'{prem}\n\nBased on the paragraph above can we conclude that "{hyp}"?\n\n'
                f"{options_block(['yes', 'it is not possible to tell', 'no'])}",
                lab,
            )
        )
    for i in range(10):
        city, animal = CITIES[i], ANIMALS[i]
        article = (
            f"Officials in {city} announced on Tuesday that a new wildlife corridor will protect the "
            f"local {animal} population, connecting two parks separated by a motorway."
        )
        rows.append(
            row(
                "flan2021",
                "gigaword:1.2.0",
                "zs_noopt",
                f"Write a short summary for this text: {article}\n\nSummary:",
                f"{city} builds wildlife corridor for {animal}s",
            )
        )
    piqa = [
        ("To keep bread fresh longer,", ["store it in a sealed bag.", "leave it in the rain."], 0),
        ("To open a stuck jar lid,", ["run it under hot water.", "put it in the freezer for a week."], 0),
        ("To clean a paintbrush after oil paint,", ["use turpentine.", "use orange juice."], 0),
        ("To stop a squeaky door hinge,", ["apply some oil.", "paint the door blue."], 0),
        ("To cool a drink quickly,", ["put it in ice water.", "wrap it in a blanket."], 0),
        ("To find a small leak in a tyre,", ["spray soapy water on it.", "shout at the tyre."], 0),
    ]
    for goal, sols, k in piqa:
        rows.append(
            row(
                "flan2021",
                "piqa:1.0.0",
                "zs_opt",
                f"Here is a goal: {goal}\n\nHow would you accomplish this goal?\n\n{options_block(sols)}",
                sols[k],
            )
        )
    hella = [
        (
            "A woman pours batter into a hot pan.",
            ["She flips the pancake when bubbles appear.", "She plants the pan in the garden."],
        ),
        ("A man ties his running shoes at the door.", ["He jogs down the street.", "He eats the laces."]),
        (
            "Kids line up at the edge of the pool.",
            ["They jump into the water one by one.", "They paint the water green."],
        ),
        ("A mechanic lifts the car on a jack.", ["He removes the flat tyre.", "He sings to the engine."]),
        (
            "The band walks onto the stage.",
            ["They start playing their first song.", "They plant trees on the stage."],
        ),
        (
            "A student opens a maths textbook.",
            ["She works through the first exercise.", "She feeds the book to a goat."],
        ),
        (
            "A chef cracks eggs into a bowl.",
            ["He whisks them with a fork.", "He mails the bowl to a friend."],
        ),
        (
            "A surfer paddles out past the waves.",
            ["She waits for a big wave to ride.", "She reads a newspaper underwater."],
        ),
    ]
    for ctx, ends in hella:
        rows.append(
            row(
                "flan2021",
                "hellaswag:1.1.0",
                "zs_opt",
                f"What happens next in this paragraph?\n\n{ctx}\n{options_block(ends)}",
                ends[0],
            )
        )
    wino = [
        ("The trophy would not fit in the suitcase because the _ was too big.", ["trophy", "suitcase"], 0),
        ("Maria lent Priya her umbrella because _ was going out in the rain.", ["Maria", "Priya"], 1),
        ("The bottle broke the glass table because the _ was fragile.", ["bottle", "table"], 1),
        ("Lukas could not lift the box onto the shelf because the _ was too heavy.", ["box", "shelf"], 0),
        ("The cat chased the mouse until the _ hid under the sofa.", ["cat", "mouse"], 1),
        ("Elena gave Nia her notes since _ had missed the lecture.", ["Elena", "Nia"], 1),
        ("The soup was colder than the tea because the _ was served first.", ["soup", "tea"], 0),
        ("Ravi beat Oskar at chess because _ practised every day.", ["Ravi", "Oskar"], 0),
    ]
    for sent, opts, k in wino:
        rows.append(
            row(
                "flan2021",
                "winogrande:1.1.0",
                "zs_opt",
                f"How does the sentence end?\n\n{sent}\n{options_block(opts)}",
                opts[k],
            )
        )
    long_article = (
        "The harbour authority of Porto published its yearly report on Monday, describing a season in which "
        "cargo traffic rose for the third year in a row while passenger ferries carried fewer travellers than "
        "before the storms of the previous winter. The report credits the new container cranes on the northern "
        "quay, which shortened the time ships spend at berth, and the dredging of the river mouth, which lets "
        "larger vessels enter at low tide. It also warns that the old fish market beside the quay needs urgent "
        "repairs, that two of the pilot boats are close to the end of their service lives, and that the city "
        "will have to decide within a year whether to build a second ferry terminal on the southern bank."
    )
    rows.append(row("flan2021", "gigaword:1.2.0", "zs_noopt",
                    f"Write a short summary for this text: {long_article}\n\nSummary:",
                    "Porto harbour report: cargo up, ferries down, repairs needed"))
    # its near duplicate: two words changed in a long text (MinHash Jaccard well above 0.8)
    rows.append(row("flan2021", "gigaword:1.2.0", "zs_noopt",
                    "Write a short summary for this text: "
                    + long_article.replace("third year", "fourth year").replace("Monday", "Tuesday")
                    + "\n\nSummary:",
                    "Porto harbour report: cargo up, ferries down, repairs needed"))
    # planted near duplicate across tasks (a few words changed) and an exact duplicate
    src = rows[1]
    rows.append(
        row(
            "flan2021",
            "glue/sst2:2.0.0",
            src["template_type"],
            src["inputs"].replace("two nights", "three nights"),
            src["targets"],
        )
    )
    src = rows[20]
    rows.append(
        row(
            "flan2021",
            "openbookqa:0.1.0",
            src["template_type"],
            src["inputs"].replace("  ", " ") + " ",
            src["targets"],
        )
    )
    return rows


# --- Dialog ----------------------------------------------------------------------------------


def dialog_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for i, city in enumerate(CITIES):
        turns = (
            f"[Q] What is {city} known for?\n[A] It is known for its old harbour and its food market.\n"
            f"[Q] When is the market open?"
        )
        rows.append(
            row(
                "dialog",
                "qrecc",
                "zs_noopt",
                f"{turns}\n\nAnswer the last question of the conversation.",
                "Most days from early morning.",
            )
        )
        rows.append(
            row(
                "dialog",
                "qrecc_ii",
                "zs_noopt",
                f'Here is an answer from a conversation about {city}: "It opens at six." Write the '
                "question that was asked.",
                f"When does the market in {city} open?",
            )
        )
    for i, animal in enumerate(ANIMALS[:8]):
        rows.append(
            row(
                "dialog",
                "wiki_dialog",
                "zs_noopt",
                f"Imagine a conversation about the {animal}.\nUser: Where does the {animal} live?\nAgent:",
                f"The {animal} lives in several habitats depending on the season.",
            )
        )
        rows.append(
            row(
                "dialog",
                "wiki_dialog_ii",
                "fs_noopt" if i % 2 else "zs_noopt",
                f"Write the question a curious reader asked about the {animal}, given the reply: "
                f'"It mostly eats small fish and insects."',
                f"What does the {animal} eat?",
            )
        )
    return rows


def build(out: Path) -> dict[str, int]:
    """Write one Parquet shard per submix under `out`, DPI layout; return the row counts."""
    rng = random.Random(7)
    builders = {
        "cot": cot_rows,
        "niv2": niv2_rows,
        "t0": t0_rows,
        "flan2021": flan2021_rows,
        "dialog": dialog_rows,
    }
    counts = {}
    for submix, fn in builders.items():
        rows = fn(rng)
        folder = out / f"{submix}_submix_original" / "data"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        pq.write_table(table, folder / "train-00000-of-00001.parquet", compression="zstd")
        counts[submix] = len(rows)
    return counts


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "sample/flan")
    print(build(target))
