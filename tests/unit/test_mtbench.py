"""MT-Bench's data and grading as FastChat's llm_judge defines them: the 80 questions with GPT-4's
reference answers where the judge needs them, the judge prompt chosen per category and turn,
and the rating read from a judgment. The expected texts are quoted from FastChat's
`judge_prompts.jsonl` and `common.py`."""

import collections

import pytest

from autan.eval import mtbench

SINGLE_V1_HEAD = "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response"
MATH_V1_HEAD = SINGLE_V1_HEAD + (
    " provided by an AI assistant to the user question displayed below. Your evaluation should consider"
    " correctness and helpfulness. You will be given a reference answer"
)


@pytest.fixture(scope="module")
def questions():
    return {q.id: q for q in mtbench.questions()}


def test_the_80_questions_and_their_references(questions):
    assert len(questions) == 80 and sorted(questions) == list(range(81, 161))
    assert collections.Counter(q.category for q in questions.values()) == {
        c: 10 for c in ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
    }
    assert all(len(q.turns) == 2 and all(q.turns) for q in questions.values())
    referenced = {q.id for q in questions.values() if q.reference}
    assert referenced == {q.id for q in questions.values() if q.category in ("math", "reasoning", "coding")}
    assert all(len(q.reference) == 2 for q in questions.values() if q.reference)
    assert questions[81].turns[1] == "Rewrite your previous response. Start every sentence with the letter A."


def test_answers_are_asked_at_the_category_temperature(questions):
    # FastChat's temperature_config
    want = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
            "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}  # fmt: skip
    for q in questions.values():
        first = mtbench.answer_chat(q, 1, None, seed=3)
        assert first.temperature == want[q.category] and first.max_tokens == 1024 and first.seed == 3
        assert first.messages == ({"role": "user", "content": q.turns[0]},)
        second = mtbench.answer_chat(q, 2, "an answer", seed=3)
        assert second.messages == (
            {"role": "user", "content": q.turns[0]},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": q.turns[1]},
        )


def test_a_general_question_is_judged_with_single_v1(questions):
    prompts = mtbench.judge_prompts()
    q = questions[81]  # writing
    first = mtbench.judge_chat(q, ("ANSWER-1", "ANSWER-2"), 1, prompts)
    system, user = first.messages
    assert system == {"role": "system", "content": "You are a helpful assistant."}
    assert user["role"] == "user" and user["content"].startswith(SINGLE_V1_HEAD)
    assert user["content"].endswith(
        f"[Question]\n{q.turns[0]}\n\n[The Start of Assistant's Answer]\nANSWER-1\n[The End of Assistant's Answer]"
    )
    assert "ANSWER-2" not in user["content"] and first.temperature == 0 and first.max_tokens == 2048
    second = mtbench.judge_chat(q, ("ANSWER-1", "ANSWER-2"), 2, prompts)
    system, user = second.messages
    assert "focus on the assistant's answer to the second user question" in system["content"]
    assert user["content"] == (
        "<|The Start of Assistant A's Conversation with User|>\n\n"
        f"### User:\n{q.turns[0]}\n\n### Assistant A:\nANSWER-1\n\n"
        f"### User:\n{q.turns[1]}\n\n### Assistant A:\nANSWER-2\n\n"
        "<|The End of Assistant A's Conversation with User|>"
    )


@pytest.mark.parametrize("category", ["math", "reasoning", "coding"])
def test_math_reasoning_and_coding_are_judged_against_the_reference(questions, category):
    prompts = mtbench.judge_prompts()
    q = next(q for q in questions.values() if q.category == category)
    _, user = mtbench.judge_chat(q, ("A1", "A2"), 1, prompts).messages
    assert user["content"].startswith(MATH_V1_HEAD)
    assert f"[The Start of Reference Answer]\n{q.reference[0]}\n[The End of Reference Answer]" in user["content"]
    assert user["content"].endswith("[The Start of Assistant's Answer]\nA1\n[The End of Assistant's Answer]")
    system, user = mtbench.judge_chat(q, ("A1", "A2"), 2, prompts).messages
    assert "You evaluation should focus on the assistant's answer to the second question" in system["content"]
    assert user["content"].startswith(
        f"<|The Start of Reference Answer|>\n\n### User:\n{q.turns[0]}\n\n### Reference answer:\n{q.reference[0]}"
        f"\n\n### User:\n{q.turns[1]}\n\n### Reference answer:\n{q.reference[1]}\n\n<|The End of Reference Answer|>"
    )
    assert user["content"].endswith("### Assistant A:\nA2\n\n<|The End of Assistant A's Conversation with User|>")


@pytest.mark.parametrize(
    ("judgment", "want"),
    [
        ("The answer is fine. Rating: [[7]]", 7.0),
        ("Rating: [[8.5]]", 8.5),
        ("first [[3]] then [[9]]", 3.0),  # the first
        ("no double brackets: [6]", 6.0),  # FastChat's backup pattern
        ("[2] and then [[5]]", 5.0),  # [[x]] wins wherever it is
        ("Rating: 6", None),  # FastChat's third pattern sets a value it never uses
        ("[[11]]", None),  # outside 1-10: no rating (FastChat keeps it)
        ("[[0]]", None),
        ("[[A]]", None),
        ("", None),
    ],
)
def test_the_rating_is_read_as_fastchat_reads_it(judgment, want):
    assert mtbench.rating(judgment) == want
