"""Math verifier: extraction, equivalence tables and the public API."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading

import pytest

from sppo_runner.verifier import (
    DEFAULT_EXTRACTORS,
    EXTRACTORS,
    Status,
    Verdict,
    Verifier,
    grade,
    grade_batch,
)
from sppo_runner.verifier.extract import extract, extract_boxed

T, F = True, False


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=5.0) as v:
        yield v


def boxed(answer: str) -> str:
    return f"Some reasoning... so the final answer is $\\boxed{{{answer}}}$."


EQUIVALENCE = {
    "thousands": [
        ("1,000", "1000", T), ("1{,}000", "1000", T), ("1\\,000", "1000", T),
        ("10,000,000", "10000000", T), ("11,\\! 111,\\! 100", "11111100", T),
        ("1,000", "100", F), ("1,234", "1243", F),
    ],
    "decimals": [
        ("0.5", "\\frac12", T), ("36", "36.0", T), ("1.60", "1.6", T), (".5", "0.5", T),
        ("-0.25", "-\\frac14", T), ("0.50001", "0.5", F), ("2.5", "25", F),
    ],
    "fractions": [
        ("\\frac{3}{4}", "0.75", T), ("\\dfrac{3}{4}", "3/4", T), ("\\tfrac34", "\\frac{3}{4}", T),
        ("6/8", "3/4", T), ("\\frac{-1}{2}", "-\\frac12", T), ("1\\frac{4}{5}", "\\frac95", T),
        ("137 \\frac{1}{2}", "137.5", T), ("\\frac{270}7", "\\frac{270}{7}", T),
        ("-1/2", "1/2", F), ("\\frac{2}{4}", "\\frac{1}{3}", F),
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}", F), ("1/2004!", "\\frac{1}{2004!}", T),
    ],
    "percent": [
        ("50\\%", "50", T), ("50\\%", "0.5", T), ("50%", "\\frac12", T), ("12.5\\%", "\\frac18", T),
        ("25", "25\\%", T), ("5\\%", "50", F), ("50\\%", "5", F),
    ],
    "scientific": [
        ("4.5e33", "4.5\\times10^{33}", T), ("4.5\\times 10^{33}", "45" + "0" * 32, T),
        ("1.6\\cdot10^{-19}", "1.6e-19", T), ("4.5e33", "4.5e32", F), ("4.5e33", "4.5", F),
    ],
    "units": [
        ("\\$12.50", "12.5", T), ("12.50 dollars", "12.5", T), ("90^\\circ", "90", T),
        ("90^{\\circ}", "90", T), ("90°", "90", T), ("12\\text{ cm}^2", "12", T),
        ("5\\text{ inches}", "5", T), ("5.4 \\text{ cents}", "5.4", T),
        ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", T), ("45^\\circ", "90", F),
        ("12 cm", "13", F),
    ],
    "text_and_delimiters": [
        ("\\text{Evelyn}", "\\text{Evelyn}", T), ("Evelyn", "\\text{Evelyn}", T),
        ("\\text{evelyn}", "\\text{Evelyn}", T), ("\\text{east}", "\\text{seat}", F),
        ("\\text{Navin}", "\\text{Evelyn}", F), ("\\left(1,2\\right)", "(1,2)", T),
        ("\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]", "[\\pi^2/8, 5\\pi^2/4]", T),
        ("\\mathrm{x}+1", "x+1", T), ("\\displaystyle \\frac{1}{2}", "0.5", T),
    ],
    "radicals_pi": [
        ("2\\sqrt{2}", "\\sqrt{8}", T), ("\\frac{1}{\\sqrt3}", "\\frac{\\sqrt3}{3}", T),
        ("\\sqrt[3]{8}", "2", T), ("\\sqrt{3+2\\sqrt2}", "1+\\sqrt2", T),
        ("2\\pi", "\\pi\\cdot 2", T), ("\\frac{20000}{\\pi}", "20000/\\pi", T),
        # a gold shown to 4 digits is a rounding (verifier/approx.py): sqrt 2 = 1.41421...
        ("\\sqrt{2}", "1.414", T), ("\\sqrt{2}", "1.4", F),
        ("\\sqrt{8}", "3\\sqrt{2}", F), ("3.14", "\\pi", F),
        ("\\sqrt{51}", "\\sqrt{50}", F), ("\\frac{\\pi}{2}", "90", F),
    ],
    "algebra": [
        ("2(k+1)", "2k+2", T), ("ab+2a+5b+10", "(a+5)(b+2)", T), ("x^2-1", "(x-1)(x+1)", T),
        ("\\frac{x^2-1}{x-1}", "x+1", T), ("\\sin^2x+\\cos^2x", "1", T),
        ("\\frac{11}{20}+\\frac{9a}{20}", "\\frac{11+9a}{20}", T), ("e^{i\\pi}", "-1", T),
        ("\\log_2 8", "3", T), ("x^{1/2}", "\\sqrt{x}", T),
        ("p-q", "q-p", F), ("x^2+1", "x^2-1", F), ("2k", "2n", F), ("\\cot x", "\\tan x", F),
    ],
    "equations": [
        ("x=5", "5", T), ("5", "x=5", T), ("y=2x+3", "2x+3", T), ("y=2x+3", "y=3+2x", T),
        ("2x+2y=2", "x+y=1", T), ("10x-14y+22z+8=0", "5x - 7y + 11z + 4 = 0", T),
        ("x = 5", "x=6", F), ("x=5", "y=5", F), ("x=5", "6", F), ("y=2x", "y=-2x", F),
    ],
    "tuples_intervals": [
        ("(1,2)", "(1, 2)", T), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\pi/2)", T),
        ("[1,2)", "[1,2)", T), ("(-\\infty, 0]", "(-\\infty,0]", T),
        ("x \\in [-2,7]", "[-2,7]", T), ("x\\ge 3", "[3,\\infty)", T),
        ("-2<x\\le 3", "(-2,3]", T), ("(0,9)\\cup(9,36)", "(9,36)\\cup(0,9)", T),
        ("(1,2)", "(2,1)", F), ("(1,2)", "[1,2]", F), ("[1,2)", "[1,2]", F),
        ("(-\\infty,0)", "(-\\infty,0]", F), ("x>3", "[3,\\infty)", F),
        ("(0,9)\\cup(9,36)", "(0,36)", F), ("(1,2,3)", "(1,2)", F),
        ("x<2 \\text{ or } x>3", "(-\\infty, 2) \\cup (3, \\infty)", T),
        ("x<2 \\text{ or } x>4", "(-\\infty, 2) \\cup (3, \\infty)", F),
    ],
    "sets_lists": [
        ("1,2", "2,1", T), ("\\{1,2\\}", "\\{2,1\\}", T), ("\\{1,2\\}", "1,2", T),
        ("3, 5, 7", "7,5,3", T), ("1\\pm\\sqrt{19}", "1+\\sqrt{19},1-\\sqrt{19}", T),
        ("-2, 1-\\sqrt5, 1+\\sqrt5", "\\{1\\pm\\sqrt5,-2\\}", T), ("x=1, x=2", "1,2", T),
        ("x=1 \\text{ and } x=-2", "1,-2", T),
        ("1,2", "1,2,3", F), ("1,2", "1,3", F), ("1+\\sqrt{19}", "1\\pm\\sqrt{19}", F),
    ],
    "multiple_choice": [
        ("C", "\\text{(C)}", T), ("(C)", "C", T), ("\\textbf{(C)} 12", "C", T),
        ("\\text{(B)}", "(B)", T), ("B", "C", F), ("(A)", "\\text{(E)}", F),
    ],
    "matrices_complex_bases": [
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", T),
        ("(-1/3, 2/3, 5/3)", "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}", T),
        ("\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
         "\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}", F),
        ("6-5i", "6 - 5i", T), ("-5i+6", "6-5i", T), ("6+5i", "6-5i", F),
        ("52_{8}", "52_8", T), ("52", "52_8", T), ("42", "52_8", F),
    ],
    "no_rounding_false_positives": [
        ("500", "5", F), ("0.333", "\\frac{1}{3}", F), ("0.6667", "\\frac23", F),
        ("3.1416", "\\pi", F), ("1.4142135623730951", "\\sqrt{2}", F),
        ("0.3333333333333333333333", "1/3", F), ("1000001", "1000000", F),
        ("2 3", "6", F), ("1 2", "2", F), ("1 2", "12", F), ("1 000", "1000", T),
    ],
}
CASES = [
    pytest.param(a, g, want, id=f"{cat}-{i}-{'eq' if want else 'ne'}")
    for cat, rows in EQUIVALENCE.items() for i, (a, g, want) in enumerate(rows)
]


@pytest.mark.parametrize("answer,gold,want", CASES)
def test_equivalence(verifier, answer, gold, want):
    verdict = verifier.grade(boxed(answer), gold)
    assert verdict.status in Status.ALL
    assert (verdict.status == Status.CORRECT) is want, verdict
    assert verdict.reward == (1.0 if want else 0.0)


EXTRACTION = [
    ("\\boxed{1} and later \\boxed{2}", ("boxed",), "2"),
    ("x = \\boxed{\\frac{1}{\\sqrt{2}}}.", ("boxed",), "\\frac{1}{\\sqrt{2}}"),
    ("\\fbox{7}", ("boxed",), "7"),
    ("$\\boxed 5$", ("boxed",), "5"),
    ("so \\boxed 12.", ("boxed",), "12"),
    ("\\boxed{\\{1,2\\}}", ("boxed",), "\\{1,2\\}"),
    ("<think>maybe \\boxed{1}</think> final: \\boxed{2}", ("boxed",), "2"),
    ("<think>maybe \\boxed{1}</think> no box after thinking", ("boxed",), None),
    ("unbalanced \\boxed{1", ("boxed",), None),
    ("\\boxed{3} then a broken \\boxed{", ("boxed",), "3"),
    ("steps\n#### 1,234", ("gsm8k",), "1,234"),
    ("so the answer is $\\frac{1}{2}$.", ("answer_is",), "\\frac{1}{2}"),
    ("The answer is: 42", ("answer_is",), "42"),
    ("Answer: (B)", ("answer_colon",), "(B)"),
    ("#### 72", ("boxed", "gsm8k"), "72"),
    ("\\boxed{5}\n#### 72", ("boxed", "gsm8k"), "5"),
    ("nothing here", ("boxed", "gsm8k", "answer_is", "answer_colon"), None),
]


@pytest.mark.parametrize("response,names,want", EXTRACTION)
def test_extraction(response, names, want):
    assert extract(response, names) == want


def test_extract_nested_braces_deep():
    inner = "{" * 500 + "x" + "}" * 500
    assert extract_boxed("\\boxed{" + inner + "}") == inner


def test_verdict_api(verifier):
    v = verifier.grade(boxed("\\frac{1}{2}"), "0.5")
    assert v == Verdict(1.0, "correct", "\\frac{1}{2}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.reward = 0.0  # type: ignore[misc]
    assert verifier.grade("no box", "1") == Verdict(0.0, Status.NO_ANSWER, None)
    assert verifier.grade(boxed("{}"), "1").status == Status.NO_ANSWER
    assert verifier.grade(boxed("\\int_0^1 x dx"), "1/2").status == Status.UNPARSABLE
    assert verifier.grade(None, "1").status == Status.ERROR  # type: ignore[arg-type]
    assert set(EXTRACTORS) == {"boxed", "gsm8k", "answer_is", "answer_colon"}
    assert DEFAULT_EXTRACTORS == ("boxed",)


def test_grade_batch_and_validation(verifier):
    out = verifier.grade_batch([boxed("1"), boxed("x+1"), "none"], ["1", "1+x", "3"])
    assert [v.status for v in out] == ["correct", "correct", "no_answer"]
    with pytest.raises(ValueError):
        verifier.grade_batch(["a"], [])
    with pytest.raises(ValueError):
        Verifier(extractors=("nope",), workers=0)


def test_module_level_functions():
    assert grade(boxed("3/4"), "0.75").reward == 1.0
    assert grade("#### 72", "72", extractors=("gsm8k",)).status == "correct"
    statuses = [v.status for v in grade_batch([boxed("2\\sqrt2"), boxed("3")], ["\\sqrt8", "4"])]
    assert statuses == ["correct", "wrong"]


def test_in_process_mode_and_restart_after_close():
    v = Verifier(workers=0)
    assert v.grade(boxed("\\sqrt{4}"), "2").status == "correct"
    v2 = Verifier(workers=1)
    assert v2.grade(boxed("x^2"), "x\\cdot x").status == "correct"
    v2.close()
    assert v2.grade(boxed("x^3"), "x\\cdot x").status == "wrong"  # restarts lazily
    v2.close()


def test_concurrent_threads(verifier):
    answers = [("2\\sqrt2", "\\sqrt8", "correct"), ("x+1", "x+2", "wrong"), ("7", "7", "correct")]
    errors: list[str] = []

    def work() -> None:
        for _ in range(5):
            for a, g, want in answers:
                got = verifier.grade(boxed(a), g).status
                if got != want:
                    errors.append(f"{a} vs {g}: {got}")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_gold_cache_is_bounded():
    v = Verifier(workers=0, gold_cache_size=3)
    for k in range(10):
        v.grade(boxed(str(k)), str(k))
    assert len(v._gold_cache) == 3


def test_import_pulls_no_torch():
    code = ("import sys, sppo_runner.verifier as v; v.grade('\\\\boxed{1}', '1'); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
