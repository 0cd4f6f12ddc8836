"""verifier.rule=reference: the paper code's reward rule, stage by stage (hand-derived tables).

Each expectation follows from reading sustech-nlp/SPPO @ 55e8a72
(verl/utils/reward_score/naive_dapo.py, prime_math/); no reference code runs here.
tests/test_verifier_reference_measured.py holds pairs whose verdicts were measured
against the reference's own function.
"""

from __future__ import annotations

import pytest

from sppo_runner.verifier import Status, Verifier
from sppo_runner.verifier.reference_fallback import Raised, fallback_equal
from sppo_runner.verifier.reference_normalize import (
    allows_symbolic,
    is_fraction,
    mathd_normalize,
    prm_normalize,
    split_items,
    str_is_int,
)
from sppo_runner.verifier.reference_rule import extract, first_test, second_test
from sppo_runner.verifier.reference_sympy import compare, lex


@pytest.fixture(scope="module")
def verifier():
    with Verifier(rule="reference", workers=1, timeout_s=5.0) as v:
        yield v


# -- extraction -----------------------------------------------------------------
@pytest.mark.parametrize("response, want", [
    ("so \\boxed{5}", ("5", True)),
    ("\\boxed{1} then \\boxed{ 2 }", ("2", True)),                # the last box, stripped
    ("\\boxed{\\frac{1}{2}}", ("\\frac{1}{2}", True)),            # braces matched
    ("<think>\\boxed{3}</think> 4", (" 4", False)),               # only after </think>; no box: the text
    ("\\fbox{7}", ("7", True)),                                  # \fbox when there is no \boxed
    ("\\fbox{7} \\boxed{8", ("\\fbox{7} \\boxed{8", False)),     # an unclosed last \boxed: no answer box
    ("\\boxed{}", ("\\boxed{}", False)),                         # an empty box counts as none
    ("42", ("42", False)),
])
def test_extraction(response, want):
    assert extract(response) == want


# -- normalisations ---------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\sqrt3", "\\sqrt{3}"),
    ("0.5", "\\frac{1}{2}"),
    ("3/4", "\\frac{3}{4}"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("x = 5", "5"),                            # a short name before one "=" is dropped
    ("area = 5", "area=5"),                    # a long one is not
    ("5 \\text{ cm}", "5"),                    # one unit block on the right
    ("5 \\text{ cm} \\text{ s}", "5 \\text{ cm} \\text{ s}"),  # two: the step fails, text kept
    ("\\text{(B)}", "(B)"),
    (".25", "0.25"),
    ("90^\\circ", "90"),
])
def test_mathd_normalize(text, want):
    assert mathd_normalize(text) == want


@pytest.mark.parametrize("text, want", [
    ("\\frac{1}{2}", "1/2"),                   # LaTeX rendered as text
    ("\\frac{a+b}{c}", "a+b/c"),               # ... without parentheses, as pylatexenc does
    ("2\\sqrt{3}", "2sqrt(3)"),
    ("\\pi/4", "pi/4"),
    ("\\infty", "inf"),
    ("3.0", "3"),                              # integral floats become integers
    ("1,000", "1000"),
    ("5 cm", "5"),                             # unit words go
    ("2 million", "2 *10^6"),
    ("x or y", "x , y"),
    ("7 1/2", "7+1/2"),                        # mixed numbers
    ("\\text{Yes}", "yes"),                    # lower case
    ("{5}", "5"),
    ("10\\%", "10"),
])
def test_prm_normalize(text, want):
    assert prm_normalize(text) == want


@pytest.mark.parametrize("text, items", [
    ("(1,2)", ["1", "2"]),
    ("[1, 2)", ["1", "2"]),
    ("(1,(2))", ["(1,(2))"]),                  # inner brackets: one item
    ("1,2", ["1,2"]),                          # no brackets: one item
    ("(1,000,2)", ["1000", "2"]),              # thousands commas go first
    ("", []),
])
def test_split_items(text, items):
    assert split_items(text) == items


def test_item_predicates():
    assert is_fraction("1/2") and is_fraction("-10/3") and not is_fraction("1/0") and not is_fraction("x/2")
    assert str_is_int("3") and str_is_int("3.00000001") and str_is_int("1,000") and not str_is_int("3.5")
    assert not str_is_int("inf") and not str_is_int("nan")
    assert allows_symbolic("(x+y)-(y+x)") and not allows_symbolic("(a+b+c)-(c+b+a)")  # three letters
    assert allows_symbolic("(sqrt(2))-(2)")                  # sqrt and frac are not letters
    assert not allows_symbolic("(x^{2})-(x)") and not allows_symbolic("(2^(x))-(1)")
    assert not allows_symbolic("(2^10)-(1024)") and not allows_symbolic("(2^3^2)-(1)")


# -- the first test (grade_answer) --------------------------------------------------
@pytest.mark.parametrize("answer, truth, want", [
    ("\\frac12", "\\frac{1}{2}", True),        # equal after the first normalisation
    ("3.0", "3", True),                        # ... after the second
    ("\\frac{6}{2}", "3", False),              # an integer truth needs an integer answer
    ("\\sqrt{9}", "3", False),
    ("3", "\\frac{6}{2}", False),
    ("2/4", "1/2", False),                     # two fractions: strings must match
    ("[1,2]", "(1,2)", False),                 # other brackets
    ("(1,2,3)", "(1,2)", False),
    ("", "1", False),
])
def test_first_test_without_sympy(answer, truth, want):
    assert first_test(answer, truth) is want


@pytest.mark.parametrize("answer, truth, pairs", [
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", [("sqrt(3)/2", "1/2sqrt(3)")]),
    ("(0.5, 2)", "(\\frac{1}{2}, 2)", [("0.5", "1/2"), ("2", "2")]),
    ("(2,1)", "(1,2)", [("2", "1"), ("1", "2")]),  # integers on both sides: sympy decides
])
def test_first_test_hands_items_to_sympy(answer, truth, pairs):
    assert first_test(answer, truth) == pairs


@pytest.mark.parametrize("answer, truth, want", [
    ("sqrt(3)/2", "1/2sqrt(3)", "correct"),
    ("x^2+2x+1", "(x+1)^2", "correct"),
    ("2pi", "pi*2", "correct"),
    ("0.5", "1/2", "correct"),
    ("0.1+0.2", "0.3", "wrong"),               # decimals are binary floats there: 5.6e-17 apart
    ("2^0.5", "sqrt(2)", "wrong"),             # a float power is not the exact root
    ("2 .25", "0.5", "correct"),               # two numbers side by side multiply
    ("1e-3", "0.001", "correct"),
    ("x2", "2x", "correct"),                   # split_symbols: x2 is x*2
    ("sqrt 3/2", "sqrt(3)/2", "correct"),      # implicit application
    ("ln(4)", "2ln(2)", "correct"),
    ("5!", "120", "correct"),
    ("i^2", "-1", "wrong"),                    # lower case i is a symbol there
    ("e^2", "e*e", "correct"),
    ("sqrt(2)", "1.414", "wrong"),
    ("sqrt 3*2", "sqrt(6)", "unparsable"),     # sympy applies to more than one token
    ("nan", "nan", "unparsable"),              # sympy's names are refused
    ("012", "12", "unparsable"),               # Python reads 012 as 0 then 12
    ("[1]", "1", "unparsable"),
    ("__import__('os')", "1", "unparsable"),
])
def test_symbolic_step(answer, truth, want):
    assert compare(answer, truth) == want


def test_lexer_reads_python_names():
    tokens, decimals = lex("2pi x_1 θ xy 0.5")
    assert [t.text for t in tokens] == ["2", "pi", "x_1", "θ", "x", "y", "_dec0"]
    assert decimals == {"_dec0": "0.5"}


# -- the second test (prime_math's math_equal) ---------------------------------------
@pytest.mark.parametrize("answer, truth, want", [
    ("50", "0.5", True),                       # the truth read as a percentage
    ("0.5", "50", True),
    ("3.1416", "3.14159", True),               # relative tolerance 1e-4
    ("3.15", "3.14159", False),
    ("$5", "5", True),
    ("(1,2)", "1,2", True),                    # brackets stripped
    ("[1,2]", "(1,2)", False),
    ("(1.0, 2)", "(1,2)", True),               # item by item
    ("1.0, 2", "1, 2", True),
    ("Interval(1, 2)", "[1,2]", True),
    ("1011_2", "1011", True),                  # a subscript base: the digits count
    ("x", "y", False),
])
def test_second_test(answer, truth, want):
    assert second_test(answer, truth) is want


def test_second_test_raising_cases_score_zero():
    with pytest.raises(Raised):
        fallback_equal("x_1", "1")             # float('x') raises in the reference
    assert second_test("x_1", "x_1") is False
    # A raising item decides even after a differing one: the reference builds the whole list.
    assert second_test("(2, a_1)", "(1, 1)") is False


def test_pi_disables_the_second_test():
    # The reference's call with \pi passes tiemout=..., raises TypeError and scores 0:
    # 3.1416 would pass math_equal's tolerance against \pi, but is never asked.
    assert second_test("3.1416", "\\pi") is False
    assert second_test("3.1416", "3.14159") is True


# -- whole rule -----------------------------------------------------------------------
@pytest.mark.parametrize("response, truth, reward, status", [
    ("\\boxed{\\frac{1}{2}}", "0.5", 1.0, Status.CORRECT),
    ("\\boxed{50}", "0.5", 1.0, Status.CORRECT),            # second test
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}", 1.0, Status.CORRECT),  # sympy, in a worker
    ("\\boxed{(x+1)^{2}}", "x^2+2x+1", 0.0, Status.WRONG),    # ^{ keeps sympy out
    ("\\boxed{a+b+c}", "c+b+a", 0.0, Status.WRONG),          # three letters keep sympy out
    ("\\boxed{3.1416}", "\\pi", 0.0, Status.WRONG),
    ("42", "42", 1.0, Status.CORRECT),                       # no box: the whole text
    ("the answer is 42", "42", 0.0, Status.NO_ANSWER),
    ("x " * 600 + "42", "42", 0.0, Status.NO_ANSWER),        # over max_answer_chars
    # Residual: sympy would read sqrt 3*2 as sqrt(6) and accept; the lexer refuses it.
    ("\\boxed{sqrt 3*2}", "\\sqrt{6}", 0.0, Status.UNPARSABLE),
    (None, "1", 0.0, Status.ERROR),
])
def test_rule_end_to_end(verifier, response, truth, reward, status):
    v = verifier.grade(response, truth)
    assert (v.reward, v.status) == (reward, status)


def test_rule_in_process_matches_workers(verifier):
    responses = ["\\boxed{\\frac{\\sqrt{3}}{2}}", "\\boxed{x^2+2x+1}", "\\boxed{2}"]
    truths = ["\\frac{1}{2}\\sqrt{3}", "(x+1)^2", "3"]
    with Verifier(rule="reference", workers=0) as local:
        assert local.grade_batch(responses, truths) == verifier.grade_batch(responses, truths)


def test_latex_input_reads_no_file(tmp_path):
    secret = tmp_path / "secret.tex"
    secret.write_text("hunter2")
    assert "hunter2" not in prm_normalize(f"\\input{{{secret}}}")


def test_bad_rule_is_refused():
    with pytest.raises(ValueError, match="equivalence, reference"):
        Verifier(rule="strict")
