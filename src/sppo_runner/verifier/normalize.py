"""String cleanup of extracted answers, and the sympy-free numeric fast path.

Normalization removes presentation-only LaTeX (``\\left``, spacing, ``\\text``
wrappers, units, currency, degrees) so that both the fast path and the parser
see a small, regular vocabulary. Nothing here evaluates anything.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .prose import canonical_params, drop_filler, strip_ordinals

_UNITS = frozenset(
    "cm mm km m meter meters metre metres centimeter centimeters millimeter "
    "millimeters kilometer kilometers inch inches in ft feet foot yard yards yd "
    "mile miles mi mph kph km/h m/s unit units sq square cubic second seconds sec "
    "secs s minute minutes min mins hour hours hr hrs h day days week weeks month "
    "months year years dollar dollars cent cents usd euro euros pound pounds lb lbs "
    "ounce ounces oz gram grams g kg kilogram kilograms liter liters litre litres l "
    "ml gallon gallons degree degrees deg radian radians rad point points people "
    "person persons student students way ways times percent page pages book books "
    "apple apples marble marbles coin coins tile tiles square squares cube cubes "
    "game games box boxes item items number numbers digit digits value values edge "
    "edges vertices face faces per sides triangles integers solutions pairs handshakes "
    "laps steps moves cookies candies pencils cards tickets seats chairs calories mg "
    "tons rpm".split()
)
# A unit alone in its own \text{...} block is always decoration.
_TEXT_BLOCK_RE = re.compile(
    r"\\(?:text|mbox|mathrm|textrm|rm)\s*\{([^{}]{0,60})\}(\^\{?[23]\}?)?"
)
# "x=1 \text{ and } x=2": the connective separates list items; "or" and "and"
# are kept apart because they unite or intersect inequalities.
_TEXT_CONJ_RE = re.compile(r"\\(?:text|mbox|mathrm|textrm)\s*\{\s*(and|or|,)\s*\}")
_POWER_SUFFIXES = ("^{2}", "^{3}", "^2", "^3", "²", "³")
_WRAPPERS_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|textsf|mathrm|mathbf|mathit|mathsf|"
    r"mathtt|mbox|boldsymbol|bm|operatorname|rm|bf|it|displaystyle|boxed|fbox)\b\s*"
)
_SPACING_RE = re.compile(
    r"\\(?:left|right|middle|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)"
    r"(?![a-zA-Z])|(?<!\\)\\[,;:! ]|\\q?quad\b|\\(?:hspace|vspace)\*?\{[^{}]*\}|~"
)
_DEGREE_RE = re.compile(
    r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\^\s*\{\s*o\s*\}|\\circ|°|\\degree"
)
_DEGREE_WORDS = frozenset({"degree", "degrees", "deg"})
_DEGREE_HINTS = ("\\circ", "°", "deg", "^{o}")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:(?:, ?|\{,\}|\\,| )\d{3})+(?:\.\d+)?$")
_UNICODE = {
    "−": "-", "–": "-", "—": "-", "×": "*", "·": "*", "÷": "/", "π": "\\pi ",
    "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "√": "\\sqrt",
    "∪": "\\cup ", "∩": "\\cap ", "∅": "\\emptyset ", "\u00a0": " ", "±": "\\pm ",
    "∈": "\\in ", "’": "'", "\u200b": "", "≈": "\\approx ", "⌈": "\\lceil ",
    "⌉": "\\rceil ", "⌊": "\\lfloor ", "⌋": "\\rfloor ", "ℝ": "\\mathbb{R}",
    "ℤ": "\\mathbb{Z}", "ℕ": "\\mathbb{N}", "′": "'", "″": "''",
}
_LATEX_ALIASES = (
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"),
    ("\\dbinom", "\\binom"), ("\\tbinom", "\\binom"), ("\\leqslant", "\\le"),
    ("\\geqslant", "\\ge"), ("\\leq", "\\le"), ("\\geq", "\\ge"), ("\\neq", "\\ne"),
    ("\\lbrace", "\\{"), ("\\rbrace", "\\}"), ("\\lvert", "|"), ("\\rvert", "|"),
    ("\\vert", "|"), ("\\lbrack", "["), ("\\rbrack", "]"), ("\\varnothing", "\\emptyset"),
    ("\\infin", "\\infty"), ("\\varpi", "\\pi"), ("np.", ""),
    ("math.", ""), ("sympy.", ""),
)
_CURRENCY_RE = re.compile(r"\\\$|\$|€|£|¥|\\euro\b|\bUSD\b|\bRs\.?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\\text\{\s*percent\s*\}|\bpercent\b)\s*$")
_FAST_NUMBER_RE = re.compile(r"^([-+]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d{1,4}))?$")
_FAST_FRAC_RE = re.compile(
    r"^([-+]?)\\frac\{([-+]?\d{1,60})\}\{([-+]?\d{1,60})\}$|^([-+]?)\\frac(\d)(\d)$"
)
_FAST_SLASH_RE = re.compile(r"^([-+]?\d{1,60})/(\d{1,60})$")
_MC_RE = re.compile(r"^\(?([A-Ea-e])\)?(?:$|[\s.:)]|\\quad)")
_MC_GOLD_RE = re.compile(r"^\(?([A-E])\)?$")
_MAX_FAST_DIGITS = 400
_PLAIN_NUMBER_RE = re.compile(r"-?\d{1,50}(?:\.\d{1,50})?")
_SPACED_DIGITS_RE = re.compile(r"\d\s+\d")


def _strip_outer(s: str) -> str:
    """Removes math delimiters, trailing punctuation and wrapping spaces."""
    s = s.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]"), ("$$", "$$")):
        if s.startswith(left) and s.endswith(right) and len(s) >= 4:
            s = s[len(left):-len(right)].strip()
    s = s.strip("$ ").strip()
    while s and s[-1] in ".。;" and not s.endswith("..."):
        s = s[:-1].rstrip()
    return s


def _unwrap_commands(s: str) -> str:
    r"""Drops formatting commands but keeps their braced argument.

    ``\text{Evelyn}`` becomes ``{Evelyn}``; stray braces around a whole answer
    are dropped by :func:`normalize` afterwards.
    """
    return _WRAPPERS_RE.sub("", s)


def _drop_redundant_braces(s: str) -> str:
    """Removes braces that wrap the whole string: ``{5}`` -> ``5``."""
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        depth = 0
        for i, ch in enumerate(s):
            depth += (ch == "{") - (ch == "}")
            if depth == 0 and i < len(s) - 1:
                return s
        s = s[1:-1].strip()
    return s


def _is_unit_text(text: str) -> bool:
    words = text.replace("\\", " ").split()
    return bool(words) and all(w.lower().strip(".") in _UNITS for w in words)


def _drop_unit_block(m: re.Match[str], keep_degrees: bool = False) -> str:
    # "\text{Min} = -3" names a value: a unit word before "=" is a label
    if not _is_unit_text(m.group(1)) or m.string[m.end():].lstrip().startswith("="):
        return m.group(0)
    return "°" if keep_degrees and m.group(1).strip().lower() in _DEGREE_WORDS else ""


def _drop_unit_block_keep(m: re.Match[str]) -> str:
    return _drop_unit_block(m, keep_degrees=True)


def has_degree_mark(s: str) -> bool:
    """True when ``s`` may carry a degree sign or word (a cheap pre-check)."""
    return any(h in s for h in _DEGREE_HINTS)


def _strip_trailing_units(s: str, keep_degrees: bool = False) -> str:
    """Removes unit words at the end of an answer: ``12 cm^2`` -> ``12``.

    A scan from the end rather than a regex, so hostile input cannot cause
    backtracking. Single-letter units need a space before them, so that
    ``2m`` (an expression) is kept while ``2 m`` loses its unit.
    """
    for _ in range(3):
        body = s.rstrip()
        for suffix in _POWER_SUFFIXES:
            if body.endswith(suffix):
                body = body[: -len(suffix)]
                break
        i = len(body)
        while i > 0 and (body[i - 1].isalpha() or body[i - 1] == "/"):
            i -= 1
        word = body[i:]
        if not word or word.lower() not in _UNITS:
            return s
        head = body[:i]
        spaced = head.endswith(" ")
        head = head.rstrip()
        if not head or (len(word) == 1 and not spaced):
            return s
        if not (head[-1].isdigit() or head[-1] in "}.)" or (spaced and len(word) > 1)):
            return s
        if head[-1] in "+-*/^=(,":
            return s
        if keep_degrees and word.lower() in _DEGREE_WORDS:
            return head + "°"
        s = head
    return s


def normalize(answer: str, *, keep_degrees: bool = False) -> str:
    """Normalizes an extracted answer string (pure string operations).

    Args:
        answer: extracted answer or gold text.
        keep_degrees: write degree marks (``^\\circ``, ``\\text{ degrees}``)
            as ``°`` instead of dropping them, for comparisons where an angle
            may meet its radian form.

    Returns:
        A cleaned string: no units, currency, degrees, spacing commands,
        filler words, ordinal suffixes or text wrappers; ``\\dfrac`` spelled
        ``\\frac``; thousands separators removed from plain numbers; integer
        parameter phrases as ``, k \\in \\mathbb{Z}``.
    """
    if _PLAIN_NUMBER_RE.fullmatch(answer):
        return answer  # the bulk of a batch; no pass below would change it
    s = answer.replace("\x00", "")
    for src, dst in _UNICODE.items():
        if src in s:
            s = s.replace(src, dst)
    s = _strip_outer(s)
    for src, dst in _LATEX_ALIASES:
        if src in s:
            s = s.replace(src, dst)
    s = _SPACING_RE.sub("", s)
    s = _DEGREE_RE.sub("°" if keep_degrees else "", s).replace("^{}", "")
    s = _TEXT_CONJ_RE.sub(_connective, s)
    s = drop_filler(s)
    s = _TEXT_BLOCK_RE.sub(_drop_unit_block_keep if keep_degrees else _drop_unit_block, s)
    s = _CURRENCY_RE.sub("", s)
    s = _unwrap_commands(s)
    s = s.replace("\\%", "%").strip()
    s = _drop_redundant_braces(_strip_outer(s)).lstrip("=").lstrip()
    s = strip_ordinals(_strip_trailing_units(s, keep_degrees))
    s = canonical_params(_drop_redundant_braces(s))
    if _THOUSANDS_RE.match(s):
        s = _join_thousands(s)
    elif "=" in s:  # "\text{Total} = 32,348"
        head, _, tail = s.rpartition("=")
        if "," not in head and _THOUSANDS_RE.match(tail.strip()):
            s = f"{head}= {_join_thousands(tail.strip())}"
    return " ".join(s.split())


def _join_thousands(s: str) -> str:
    return re.sub(r"\{,\}|\\,|,| ", "", s)


def _connective(m: re.Match[str]) -> str:
    word = m.group(1)
    return "," if word == "," else f" {word} "


def split_percent(s: str) -> tuple[str, bool]:
    """Splits a trailing percent sign off a normalized answer."""
    m = _PERCENT_RE.search(s)
    if m is None:
        return s, False
    return s[: m.start()].strip(), True


def fast_number(s: str) -> Fraction | None:
    """Parses a plain number exactly, without sympy.

    Accepts integers, decimals, scientific notation (``4.5e33``,
    ``4.5\\times10^{33}``), ``\\frac{a}{b}`` and ``a/b`` with integer parts.

    Args:
        s: a normalized answer without a percent sign.

    Returns:
        The exact value, or ``None`` when ``s`` is not a plain number.
    """
    if len(s) > _MAX_FAST_DIGITS or _SPACED_DIGITS_RE.search(s):
        return None  # "1 2" is not 12 (thousands groups were joined already)
    s = s.replace(" ", "")
    if len(s) > _MAX_FAST_DIGITS:
        return None
    m = _FAST_NUMBER_RE.match(s)
    if m:
        value = Fraction(m.group(2))
        if m.group(3):
            value *= Fraction(10) ** int(m.group(3))
        return -value if m.group(1) == "-" else value
    m = _FAST_FRAC_RE.match(s)
    if m:
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else (
            m.group(4), m.group(5), m.group(6))
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign == "-" else value
    m = _FAST_SLASH_RE.match(s)
    if m:
        if int(m.group(2)) == 0:
            return None
        return Fraction(int(m.group(1)), int(m.group(2)))
    return _sci_times(s)


_SCI_TIMES_RE = re.compile(
    r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+))(?:\\times|\\cdot|\*)10\^(?:\{([-+]?\d{1,4})\}|(\d))$"
)


def _sci_times(s: str) -> Fraction | None:
    m = _SCI_TIMES_RE.match(s)
    if m is None:
        return None
    exp = int(m.group(2) if m.group(2) is not None else m.group(3))
    return Fraction(m.group(1)) * Fraction(10) ** exp


def number_candidates(s: str) -> tuple[Fraction, ...] | None:
    """Returns the exact values a plain numeric answer may stand for.

    A percentage ``50\\%`` stands for both 50 and 1/2, since graders accept
    either reading; any other number stands for itself.
    """
    body, is_percent = split_percent(s)
    value = fast_number(body)
    if value is None:
        return None
    return (value, value / 100) if is_percent else (value,)


def choice_letter(s: str, *, gold: bool) -> str | None:
    """Returns the multiple-choice letter of an answer, if it is one.

    Gold answers must be exactly a letter A-E (optionally in parentheses);
    responses may follow the letter with the option text, e.g. ``(C) 12``.
    """
    s = s.replace("{", "").replace("}", "").strip()
    if gold:
        m = _MC_GOLD_RE.match(s)
        return m.group(1) if m else None
    m = _MC_RE.match(s)
    return m.group(1).upper() if m else None


_WORD_RE = re.compile(r"[A-Za-z]+")
_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z' -]*[A-Za-z]")
_MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp sqrt "
    "pi infty inf".split()
)


def is_text_answer(s: str) -> bool:
    """True for word answers ("Evelyn", "even"), which are compared as text.

    A word has a run of three or more letters that is not a function name;
    shorter runs such as ``xy`` or ``ab`` are read as products of variables.
    """
    if not _TEXT_RE.fullmatch(s):
        return False
    return any(len(w) >= 3 and w.lower() not in _MATH_WORDS for w in _WORD_RE.findall(s))


def text_key(s: str) -> str:
    """A loose comparison key for non-mathematical (text) answers."""
    # Spaces go, except between digits: "1 2" must not become 12.
    key = re.sub(r"(?<!\d)\s+|\s+(?!\d)|[{}]", "", s)
    # Case only matters in mathematics; word answers ("Evelyn") ignore it.
    return key.lower() if is_text_answer(s) else key
