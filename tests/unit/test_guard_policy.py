"""Guard policies as operators write them, and the self-reflection moderator's reading of a
model's one-word verdict."""

import pytest

from autan.guard.categories import CATEGORIES
from autan.guard.moderators import REFLECTION_CATEGORIES, reflection_result
from autan.guard.policy import BLOCKED, GuardPolicy, PolicyError


def test_a_policy_file_sets_what_it_names_and_keeps_the_rest(tmp_path):
    path = tmp_path / "guard.toml"
    path.write_text('output = false\nblock = ["selfharm", "pii"]\n[thresholds]\nselfharm = 0.3\nunsafe = 0.7\n')
    policy = GuardPolicy.load(path)
    assert policy.output is False and policy.input is True and policy.block == ("selfharm", "pii")
    assert policy.thresholds == {"selfharm": 0.3, "unsafe": 0.7} and policy.moderator == "classifier"
    assert GuardPolicy().block == BLOCKED and set(BLOCKED) <= set(CATEGORIES)


@pytest.mark.parametrize(
    "text, words",
    [
        ('moderator = "vibes"', ["moderator", "vibes", "classifier"]),
        ("check_every = 0", ["check_every", "0", "1..4096"]),
        ('block = ["violence"]', ["violence", "not a category"]),
        ("[thresholds]\nselfharm = 1.5", ["selfharm", "1.5", "(0, 1]"]),
        ("[thresholds]\nspam = 0.5", ["spam", "not a category"]),
        ('input = "yes"', ["input", "true or false"]),
        ("colour = 1", ["unknown key", "colour"]),
        ("input = ", ["not valid TOML"]),
        ('refusal = "  "', ["refusal", "empty"]),
        ("refusal = 5", ["refusal", "string"]),
        ("check_every = true", ["check_every", "True"]),
        ("[thresholds]\nunsafe = true", ["unsafe", "True"]),
        ('self_reflection_prompt = "Is this bad?"', ["self_reflection_prompt", "{text}"]),
    ],
)
def test_a_bad_policy_names_the_key_and_the_value(tmp_path, text, words):
    path = tmp_path / "guard.toml"
    path.write_text(text + "\n")
    with pytest.raises(PolicyError) as error:
        GuardPolicy.load(path)
    assert str(path) in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_a_missing_policy_file_is_named(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        GuardPolicy.load(tmp_path / "absent.toml")


def test_the_models_verdict_maps_onto_our_categories():
    for name, ours in REFLECTION_CATEGORIES.items():
        for said in (name, name.upper() + ".", f" {name}\n", f'"{name}"'):
            result = reflection_result(said, "some text")
            assert {c for c, on in result.categories.items() if on} == set(ours), said
    assert not any(reflection_result("not moderated", "hello").categories.values())
    assert not any(reflection_result("I am not sure", "hello").categories.values())
    assert reflection_result("unqualified law", "x").categories["law"]  # not "law" in "unqualified"
    assert reflection_result("not moderated", "mail me: a@b.org").categories["pii"]  # the detector still runs


class _Says:
    """A moderator that finds what it is told to, whatever the text."""

    def __init__(self, *found):
        self.found = found

    async def moderate(self, texts):
        from autan.guard.classifier import Result

        return [Result({c: float(c in self.found) for c in CATEGORIES}, {c: c in self.found for c in CATEGORIES})]


@pytest.mark.parametrize(
    ("found", "rail", "blocked"),
    [
        (("jailbreaking",), "input", ("jailbreaking",)),
        (("jailbreaking",), "output", None),  # an answer is not a way of asking
        (("jailbreaking", "selfharm"), "output", ("selfharm",)),
        (("health",), "input", None),  # scored and logged, not blocked by default
        (("violence_and_threats",), "output", ("violence_and_threats",)),
    ],
)
def test_the_rails_block_what_the_policy_names_and_answers_are_never_jailbreaks(found, rail, blocked):
    import asyncio

    from autan.guard.rails import GuardRails

    guard = GuardRails(GuardPolicy(), {})
    guard.rails_moderator = lambda policy, served: _Says(*found)
    verdict = asyncio.run(guard.check(GuardPolicy(), None, rail, ["some text"]))
    assert (verdict.categories if verdict else None) == blocked
    if verdict:
        assert verdict.rail == rail and set(verdict.scores) == set(blocked)
