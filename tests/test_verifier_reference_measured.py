"""verifier.rule=reference against verdicts measured with the reference's own function.

Each row is ``(response, ground truth, reference verdict, how the pair was made)``. The
verdicts were measured by running ``naive_dapo.compute_score`` of sustech-nlp/SPPO @ 55e8a72
(outside this repository; sympy 1.14, pylatexenc 2.11, CPython 3.11) on pairs built from
../shared/data's ground truths: the ground truth itself, the next problem's answer and variants
of it, the verifier's test pairs, and probes written to find differences. The table is a
sample of that run (91,714 generated pairs, 1 disagreement; 30 probes, 2 disagreements; see
docs/reproducing.md, "Reward"); no reference code runs here. Rows where this rule differs
carry ``RESIDUAL`` and are checked to give 0 here, the documented difference.
"""

from __future__ import annotations

import pytest

from sppo_runner.verifier import Verifier


def B(answer: str) -> str:  # noqa: N802 - the response every generated pair used
    return "<think>scratch \\boxed{7}</think> So the answer is $\\boxed{" + answer + "}$."


MEASURED = [
    (B('904.7786842'), '288 \\pi', 0.0, 'approx10 math_500'),
    (B('1.11111111e+10'), '11,\\! 111,\\! 111,\\! 100', 1.0, 'approx10 math_500'),
    (B('9e+02'), '288 \\pi', 0.0, 'approx2 math_500'),
    (B('1.5'), '1.5', 1.0, 'approx2 minerva_math_2025'),
    (B('0.3563'), '.35625', 0.0, 'approx4 math_500'),
    (B('0.34'), '\\dfrac{17}{50}', 1.0, 'approx4 math_500'),
    (B('98.9949'), '70 \\sqrt{2}', 0.0, 'approx6 math_500'),
    (B('901'), '901.0', 1.0, 'approx6 amc23_2025'),
    (B('-33.3333'), '-1./3', 0.0, 'approx_pct minerva_math_2025'),
    (B('56.13'), '0.5613', 1.0, 'approx_pct minerva_math_2025'),
    (B('\\frac{\\pi}{2}'), '90', 0.0, 'breadth breadth'),
    (B('165.5 \\text{ grams}'), '165.5', 1.0, 'breadth breadth'),
    (B('1\\cdot -2'), '-2', 0.0, 'cdot1 dapo-math-17k_dedup'),
    (B('1\\cdot 27.39'), '27.39', 1.0, 'cdot1 minerva_math_2025'),
    (B('\\frac{K-1'), '\\frac{K-1', 0.0, 'cdot_swap minerva_math_2025'),
    (B('2500'), '2500', 1.0, 'cdot_swap dapo-math-17k_dedup'),
    (B('58'), '58', 1.0, 'commas math_500'),
    (B('6.0003'), '6.0', 1.0, 'dec_near amc23_2025'),
    (B('1.515'), '1.5', 0.0, 'dec_off minerva_math_2025'),
    (B('0.02'), '0.022', 0.0, 'dec_round minerva_math_2025'),
    (B('1.60'), '1.6', 1.0, 'dec_round minerva_math_2025'),
    (B('13.2872'), '\\frac{3840}{289}', 0.0, 'decimal math_500'),
    (B('0.33'), '\\dfrac{33}{100}', 1.0, 'decimal math_500'),
    (B('-3.8889'), '-\\frac{35}{9}', 0.0, 'decimal4 math_500'),
    (B('3.2000'), '\\frac{16}{5}', 1.0, 'decimal4 math_500'),
    (B('\\sqrt{2'), '\\sqrt{2', 0.0, 'dfrac minerva_math_2025'),
    (B('76'), '76', 1.0, 'dfrac dapo-math-17k_dedup'),
    (B('\\displaystyle I(0) e^{-\\frac{t'), 'I(0) e^{-\\frac{t', 0.0, 'display minerva_math_2025'),
    (B('\\displaystyle 9100'), '9100', 1.0, 'display dapo-math-17k_dedup'),
    (B('27.13'), '2713', 1.0, 'div100 dapo-math-17k_dedup'),
    (B('\\$\\frac{2-\\omega^{2'), '\\frac{2-\\omega^{2', 0.0, 'dollar minerva_math_2025'),
    (B('\\$1374'), '1374', 1.0, 'dollar dapo-math-17k_dedup'),
    ('so \\boxed 12.', '12', 0.0, 'extraction_cases unit'),
    ('\\fbox{7}', '7', 1.0, 'extraction_cases unit'),
    ('\\fbox{e^{t}', 'e^{t', 0.0, 'fbox minerva_math_2025'),
    ('\\fbox{10004}', '10004', 1.0, 'fbox dapo-math-17k_dedup'),
    (B('547'), '546', 0.0, 'int+1 dapo-math-17k_dedup'),
    (B('999999'), '999998', 1.0, 'int+1 dapo-math-17k_dedup'),
    (B('2743.0'), '2743', 1.0, 'int.0 dapo-math-17k_dedup'),
    (B('x = c x^{-2'), 'c x^{-2', 0.0, 'label minerva_math_2025'),
    (B('x = \\frac{1}{16}'), '\\frac{1}{16}', 1.0, 'label math_500'),
    (B('100 p^{\\frac{1'), '100 p^{\\frac{1', 0.0, 'left_right minerva_math_2025'),
    (B('1994'), '1994', 1.0, 'left_right dapo-math-17k_dedup'),
    ("x " * 600 + '25725', '25725', 0.0, 'long_unboxed dapo-math-17k_dedup'),
    ("x " * 600 + 'I(0)', 'I(0)', 1.0, 'long_unboxed minerva_math_2025'),  # RESIDUAL: here 0.0
    (B('\\mathrm{\\left(\\frac{t^{2}'), '\\left(\\frac{t^{2', 0.0, 'mathrm minerva_math_2025'),
    (B('\\mathrm{\\frac{17}{21}}'), '\\frac{17}{21}', 1.0, 'mathrm math_500'),
    (B('-682'), '682', 0.0, 'neg dapo-math-17k_dedup'),
    (B('-x=5'), 'x=5', 1.0, 'neg math_500'),
    (B('\\boxed{\\frac{e^{-2 t}'), '\\frac{e^{-2 t', 0.0, 'nested minerva_math_2025'),
    (B('\\boxed{151}'), '151', 1.0, 'nested dapo-math-17k_dedup'),
    (B('41.8'), '4.5e33', 0.0, 'next minerva_math_2025'),
    (B('1.325e-27'), '2.88e-19', 1.0, 'next minerva_math_2025'),
    (B('(c x^{-2)'), 'c x^{-2', 0.0, 'paren minerva_math_2025'),
    (B('(4446)'), '4446', 1.0, 'paren dapo-math-17k_dedup'),
    (B('(t + \\frac{1'), '(t + \\frac{1', 0.0, 'paren_frac minerva_math_2025'),
    (B('49140'), '49140', 1.0, 'paren_frac dapo-math-17k_dedup'),
    (B('110\\%'), '110', 1.0, 'pct math_500'),
    (B('\\sqrt{4 \\cdot\\pi G \\rho_{0'), '\\sqrt{4 \\pi G \\rho_{0', 0.0, 'pi_cdot minerva_math_2025'),
    (B('288 \\cdot\\pi'), '288 \\pi', 1.0, 'pi_cdot math_500'),
    (B('983+0'), '983', 0.0, 'plus0 dapo-math-17k_dedup'),
    (B('2.78+0'), '2.78', 1.0, 'plus0 minerva_math_2025'),
    (B('2.042e+06'), '2042224', 0.0, 'sci dapo-math-17k_dedup'),
    (B('8.610e+02'), '861', 1.0, 'sci dapo-math-17k_dedup'),
    (B('b \\delta(t)+1-e^{-a t'), 'b \\delta(t)+1-e^{-a t', 0.0, 'self minerva_math_2025'),
    (B('284'), '284', 1.0, 'self dapo-math-17k_dedup'),
    (B('4/9'), '\\frac{4}{9}', 1.0, 'slash math_500'),
    (B('\\ f r a c { s + \\ s i g m a'), '\\frac{s+\\sigma', 0.0, 'spaced minerva_math_2025'),
    (B('2 7 1'), '271', 1.0, 'spaced dapo-math-17k_dedup'),
    (B('100p^{\\frac{1'), '100 p^{\\frac{1', 0.0, 'spaces minerva_math_2025'),
    (B('49995000'), '49995000', 1.0, 'spaces dapo-math-17k_dedup'),
    (B('21\\cdot\\sqrt{5}'), '2\\sqrt{5}', 0.0, 'sqrt_mul math_500'),
    (B('1\\cdot\\sqrt{51}'), '\\sqrt{51}', 1.0, 'sqrt_mul math_500'),
    (B('66^{1/2}'), '\\sqrt{66}', 0.0, 'sqrt_pow math_500'),
    (B('19'), '19', 1.0, 'sqrt_pow dapo-math-17k_dedup'),
    (B('-8-8 \\sqrt{3'), '-8-8 \\sqrt{3', 0.0, 'sqrt_unbraced minerva_math_2025'),
    (B('\\sqrt{53}'), '\\sqrt{53}', 1.0, 'sqrt_unbraced math_500'),
    (B('2+'), '+2', 0.0, 'sum_rev minerva_math_2025'),
    (B(' 7i+-2 '), '-2 + 7i', 1.0, 'sum_rev math_500'),
    (B('\\frac{\\sqrt{2\\text{ cm}'), '\\frac{\\sqrt{2', 0.0, 'text_unit minerva_math_2025'),
    (B('6552\\text{ cm}'), '6552', 1.0, 'text_unit dapo-math-17k_dedup'),
    (B('\\text{\\hbar \\omega(v+1 / 2)-\\frac{E_{0}'), '\\hbar \\omega(v+1 / 2)-\\frac{E_{0', 0.0, 'text_wrap minerva_math_2025'),
    (B('\\text{1333}'), '1333', 1.0, 'text_wrap dapo-math-17k_dedup'),
    (B('880001\\times 1'), '880001', 0.0, 'times1 dapo-math-17k_dedup'),
    (B('2.7778e-6\\times 1'), '2.7778e-6', 1.0, 'times1 minerva_math_2025'),
    (B('[2,\\infty]'), '(2,\\infty)', 0.0, 'tuple_bracket math_500'),
    (B('(6,-1)'), '(-1,6)', 0.0, 'tuple_rev math_500'),
    ('120959', '120959', 1.0, 'unboxed dapo-math-17k_dedup'),
    ('The answer is 306', '306', 0.0, 'unboxed_sentence dapo-math-17k_dedup'),
    (B('-\\FRAC{\\PI}{6}'), '-\\frac{\\pi}{6}', 0.0, 'upper math_500'),
    (B('148'), '148', 1.0, 'upper dapo-math-17k_dedup'),
    ('\\boxed{sqrt 3*2}', '\\sqrt{6}', 1.0, 'probe probe'),  # RESIDUAL: here 0.0
    ('\\boxed{0.1+0.2}', '0.3', 0.0, 'probe probe'),
    ('\\boxed{2 .25}', '0.5', 1.0, 'probe probe'),
    ('\\boxed{re(1/2)}', '\\frac{1}{2}', 1.0, 'probe probe'),  # RESIDUAL: here 0.0
    ('\\boxed{0.3333333333333333}', '\\frac{1}{3}', 0.0, 'probe probe'),
    ('\\boxed{1/0}', '\\frac{1}{0}', 1.0, 'probe probe'),
    ('\\boxed{sqrt 2 sqrt 2}', '2.0', 0.0, 'probe probe'),
    ('\\boxed{2^{1/2}}', '\\sqrt{2}', 0.0, 'probe probe'),
    ('\\boxed{0.5x}', '\\frac{x}{2}', 1.0, 'probe probe'),
    ('\\boxed{x(x+1)}', 'x^2+x', 1.0, 'probe probe'),
    ('\\boxed{\\frac{2}{4}}', '\\frac12', 0.0, 'probe probe'),
    ('\\boxed{1.5e3}', '1500.5', 0.0, 'probe probe'),
    ('\\boxed{ln 2+1}', '1+\\ln 2', 0.0, 'probe probe'),
    ('\\boxed{ln(2)+ln(3)}', '\\ln 6', 0.0, 'probe probe'),
    ('\\boxed{2^0.5}', '\\sqrt{2}', 0.0, 'probe probe'),
    ('\\boxed{0.7071}', '\\frac{\\sqrt{2}}{2}', 0.0, 'probe probe'),
    ('\\boxed{1.41421356237310}', '\\sqrt 2', 0.0, 'probe probe'),
    ('\\boxed{3!/2}', '\\frac{6}{2}', 0.0, 'probe probe'),
    ('\\boxed{x^2y}', 'yx^2', 1.0, 'probe probe'),
    ('\\boxed{αβ}', 'βα', 1.0, 'probe probe'),
    ('\\boxed{\\theta/2}', '\\frac{1}{2}\\theta', 1.0, 'probe probe'),
    ('\\boxed{x_1+x_2}', 'x_2+x_1', 1.0, 'probe probe'),
    ('\\boxed{5 \\%}', '0.05', 0.0, 'probe probe'),
    ('\\boxed{\\$1,000}', '1000', 1.0, 'probe probe'),
    ('\\boxed{(1,2)}', '[1,2]', 0.0, 'probe probe'),
    ('\\boxed{\\dfrac{\\pi}{3}}', '60^\\circ', 0.0, 'probe probe'),
    ('\\boxed{ 3.1416 }', '\\pi', 0.0, 'probe probe'),
    ('\\boxed{9}', '9.00001', 1.0, 'probe probe'),
    ('\\boxed{100}', '1', 1.0, 'probe probe'),
    ('\\boxed{0.01}', '1', 1.0, 'probe probe'),
]
RESIDUAL = {  # (response, truth) -> why this rule scores 0 where the reference scored 1
    ("x " * 600 + "I(0)", "I(0)"): "answers over 1,000 characters are not compared",
    ("\\boxed{sqrt 3*2}", "\\sqrt{6}"): "implicit application beyond one token is refused",
    ("\\boxed{re(1/2)}", "\\frac{1}{2}"): "sympy's names (re) are refused",
}


@pytest.fixture(scope="module")
def verdicts():
    with Verifier(rule="reference", workers=2, timeout_s=5.0) as v:
        return v.grade_batch([r for r, *_ in MEASURED], [t for _, t, *_ in MEASURED])


def test_table_covers_both_verdicts_and_the_residuals():
    assert {ref for _, _, ref, _ in MEASURED} == {0.0, 1.0}
    assert len(MEASURED) > 100
    assert {(r, t) for r, t, *_ in MEASURED} >= set(RESIDUAL)


@pytest.mark.parametrize("index", range(len(MEASURED)))
def test_rule_gives_the_measured_verdict(verdicts, index):
    response, truth, reference, made = MEASURED[index]
    got = verdicts[index]
    if (response, truth) in RESIDUAL:
        assert reference == 1.0 and got.reward == 0.0, (made, RESIDUAL[(response, truth)], got)
    else:
        assert got.reward == reference, (made, truth, response[-80:], got)
