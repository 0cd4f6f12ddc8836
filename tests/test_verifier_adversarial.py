"""Hostile responses: each returns within timeout + 1 s, with reward 0, and runs nothing."""

from __future__ import annotations

import ast
import sys
import threading
import time
from pathlib import Path

import pytest

import sppo_runner.verifier as verifier_pkg
from sppo_runner.verifier import Status, Verifier

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=TIMEOUT_S) as v:
        v._pool.warm_up()  # worker start-up is not part of any item's budget
        yield v


def _payloads(marker: Path) -> list[str]:
    cmd = f"touch {marker}"
    return [
        f"__import__('os').system('{cmd}')",
        f"__import__(\"os\").system(\"{cmd}\")",
        f"eval(\"__import__('os').system('{cmd}')\")",
        f"exec('import os; os.system(\"{cmd}\")')",
        f"(lambda: __import__('os').system('{cmd}'))()",
        f"Symbol('x').__class__.__mro__[-1].__subclasses__() or os.system('{cmd}')",
        f"\\input{{|{cmd}}}",
        f"\\immediate\\write18{{{cmd}}}",
        f"open('{marker}', 'w').write('x')",
        f"x = __import__('subprocess').call(['touch', '{marker}'])",
    ]


def _assert_zero_and_fast(verifier, response: str, gold: str) -> None:
    start = time.monotonic()
    verdict = verifier.grade(response, gold)
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT_S + 1.0, (elapsed, verdict)
    assert verdict.reward == 0.0, verdict
    assert verdict.status in Status.ALL


@pytest.mark.parametrize("index", range(10))
@pytest.mark.parametrize("where", ["answer", "gold"])
def test_code_payloads_never_run(verifier, tmp_path, index, where):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[index]
    if where == "answer":
        _assert_zero_and_fast(verifier, f"\\boxed{{{payload}}}", "0")
    else:
        _assert_zero_and_fast(verifier, "\\boxed{0}", payload)
    batch = verifier.grade_batch([f"\\boxed{{{payload}}}", f"The answer is {payload}"],
                                 [payload, "1"])
    assert all(v.status in Status.ALL for v in batch)
    time.sleep(0.05)
    assert not marker.exists(), f"payload executed: {payload}"


HOSTILE = [
    pytest.param("\\boxed{5^{5^{5^{5^5}}}}", "5", id="tower-latex"),
    pytest.param("\\boxed{9**9**9}", "1", id="tower-python"),
    pytest.param("\\boxed{2^{2^{2^{2^{2^{2}}}}}}", "1", id="tower-2"),
    pytest.param("\\boxed{10^{10^{10}}}", "0", id="googolplex-ish"),
    pytest.param("\\boxed{(10^{6})!}", "1", id="huge-factorial"),
    pytest.param("\\boxed{10000!^{10000!}}", "1", id="factorial-power"),
    pytest.param("\\boxed{\\binom{10^{9}}{5\\cdot 10^{8}}}", "1", id="huge-binomial"),
    pytest.param("\\boxed{1e99999999}", "1", id="sci-huge"),
    pytest.param("\\boxed{1/0}", "1", id="div-zero"),
    pytest.param("\\boxed{\\frac{1}{0}}", "1", id="frac-zero"),
    pytest.param("\\boxed{0^{-1}}", "0", id="zero-negative-power"),
    pytest.param("\\boxed{0/0}", "0", id="zero-over-zero"),
    pytest.param("\\boxed{\\frac{x}{x-x}}", "1", id="symbolic-zero-div"),
    pytest.param("\\boxed{\\log 0}", "0", id="log-zero"),
    pytest.param("\\boxed{5\x00}", "6", id="null-in-answer"),
    pytest.param("\\boxed{\x00\x00\x00}", "0", id="only-nulls"),
    pytest.param("\x00" * 100_000, "0", id="null-flood"),
    pytest.param("\\boxed{7}", "\x00", id="null-gold"),
    pytest.param("\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}", "1", id="10k-braces"),
    pytest.param("\\boxed{" * 10_000 + "1", "1", id="10k-unclosed-boxes"),
    pytest.param("\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}", "1", id="10k-parens"),
    pytest.param("\\boxed{" + "-" * 5_000 + "1}", "1", id="unary-chain"),
    pytest.param("\\boxed{" + "1" * 1_000_000 + "}", "1", id="1MB-number"),
    pytest.param("\\boxed{" + "x+" * 500_000 + "}", "1", id="1MB-expression"),
    pytest.param("\\boxed{" * 100_000, "1", id="1MB-box-prefixes"),
    pytest.param("a" * 1_000_000, "1", id="1MB-no-answer"),
    pytest.param("\\boxed{\\def\\x{\\x\\x}\\x}", "1", id="tex-macro-bomb"),
    pytest.param("\\boxed{" + "\\sqrt{" * 300 + "2" + "}" * 300 + "}", "2", id="deep-sqrt"),
    pytest.param("\\boxed{\\sum_{n=1}^{\\infty} n}", "-1/12", id="unsupported"),
    pytest.param("\\boxed{\u202e\u200b\ufeff}", "1", id="unicode-junk"),
    # answer forms of issue 16: labels, sets, ratios, roundings, angles, families
    pytest.param("\\boxed{(\\pm1,\\pm2,\\pm3,\\pm4)}", "(1,2,3,4)", id="pm-explosion"),
    pytest.param("\\boxed{\\frac{1\\pm2}{3\\pm4}\\pm5}", "1", id="pm-in-fractions"),
    pytest.param("\\boxed{" + "1:" * 400 + "1}", "1", id="long-ratio"),
    pytest.param("\\boxed{" + "\\lceil " * 60 + "x" + "\\rceil " * 60 + "}", "1",
                 id="deep-ceiling"),
    pytest.param("\\boxed{" + "\\{x | " * 60 + "x>0" + "\\}" * 60 + "}", "1",
                 id="nested-set-builders"),
    pytest.param("\\boxed{" + "f(x)=" * 150 + "1}", "2", id="label-chain"),
    pytest.param("\\boxed{" + "\\text{only } " * 70 + "0}", "0", id="filler-flood"),
    pytest.param("\\boxed{" + "1th " * 200 + "}", "1", id="ordinal-flood"),
    pytest.param("\\boxed{60^\\circ" + " 42'" * 150 + "}", "60.7^\\circ", id="minute-flood"),
    pytest.param("\\boxed{k\\pi" + ", k \\in \\mathbb{Z}" * 60 + "}", "n\\pi+1",
                 id="declaration-flood"),
    pytest.param("\\boxed{10^{9999}}", "1.36e999", id="huge-vs-rounded-gold"),
    pytest.param("\\boxed{x \\approx 1" + "0" * 900 + ".5}", "3.14", id="huge-approx"),
    pytest.param("\\boxed{\\text{not } 0}", "0", id="negated-text"),
]


@pytest.mark.parametrize("response,gold", HOSTILE)
def test_hostile_inputs(verifier, response, gold):
    _assert_zero_and_fast(verifier, response, gold)


def test_slow_symbolic_comparison_times_out_and_worker_is_replaced(verifier):
    slow = "\\boxed{(x+y+z+w+1)^{400}}"
    start = time.monotonic()
    verdict = verifier.grade(slow, "(x+y+z+w+2)^{400}")
    assert time.monotonic() - start < TIMEOUT_S + 1.0
    assert verdict == verdict.__class__(0.0, Status.TIMEOUT, "(x+y+z+w+1)^{400}")
    # The killed worker's replacement serves the next request.
    assert verifier.grade("\\boxed{2\\sqrt2}", "\\sqrt8").status == Status.CORRECT


def test_timeouts_in_a_batch_do_not_block_the_rest(verifier):
    slow = "\\boxed{(x+y+z+w+1)^{400}}"
    responses = [slow, "\\boxed{x+1}", slow, "\\boxed{\\pi}", "\\boxed{2}"]
    golds = ["(x+y+z+w+2)^{400}", "1+x", "(x+y+z+w+3)^{400}", "\\pi", "3"]
    start = time.monotonic()
    out = verifier.grade_batch(responses, golds)
    assert time.monotonic() - start < 2 * TIMEOUT_S + 4.0  # includes worker restarts
    assert [v.status for v in out] == ["timeout", "correct", "timeout", "correct", "wrong"]


def test_grading_from_a_thread_with_timeout(verifier):
    box: list = []
    t = threading.Thread(target=lambda: box.append(
        verifier.grade("\\boxed{(a+b+c+d+1)^{400}}", "(a+b+c+d+2)^{400}")))
    t.start()
    t.join(TIMEOUT_S + 5)
    assert box and box[0].status == Status.TIMEOUT


def test_long_response_keeps_its_tail(verifier):
    start = time.monotonic()
    verdict = verifier.grade("blah " * 200_000 + "\\boxed{42}", "42")
    assert time.monotonic() - start < 1.0
    assert verdict.status == Status.CORRECT


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_memory_is_capped():
    with Verifier(workers=1, memory_mb=768) as v:
        v._pool.warm_up()
        (worker,) = v._pool._state.idle
        limits = Path(f"/proc/{worker.proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
        assert str(768 * 1024 * 1024) in line, line


_FORBIDDEN = {"eval", "exec", "compile", "__import__", "sympify", "parse_expr",
              "parse_latex", "lambdify", "S", "pickle", "system", "Popen", "loads"}
# re.compile is a regex, Popen starts workers, json.loads reads worker frames.
_ALLOWED = {"compile": {"re"}, "Popen": {"subprocess"}, "loads": {"json"}}


def _called_names(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id, None, node.lineno
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else "?"
            yield node.attr, owner, node.lineno
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield alias.name.split(".")[-1], "import", node.lineno


def test_source_never_calls_string_evaluators():
    """No eval/exec/sympify/parse_expr (or pickle) anywhere in the verifier package."""
    for path in Path(verifier_pkg.__file__).parent.glob("*.py"):
        for name, owner, lineno in _called_names(ast.parse(path.read_text())):
            if name in _FORBIDDEN and owner not in _ALLOWED.get(name, set()):
                pytest.fail(f"{path.name}:{lineno} uses {owner}.{name}")


def test_worker_start_failure_is_a_status_not_an_exception(monkeypatch):
    from sppo_runner.verifier import pool

    monkeypatch.setattr(pool, "_WORKER_MODULE", "sppo_runner.verifier.no_such_module")
    with Verifier(workers=1) as v:
        out = v.grade_batch(["\\boxed{x+1}", "\\boxed{2}"], ["1+x", "2"])
    assert [o.status for o in out] == [Status.ERROR, Status.CORRECT]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_workers(verifier):
    import os

    assert verifier.grade("\\boxed{2x}", "x+x").status == Status.CORRECT
    parent_pids = {w.proc.pid for w in verifier._pool._state.idle}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must not reuse (or kill) the parent's workers
        try:
            status = verifier.grade("\\boxed{3x}", "x+2x").status
            mine = {w.proc.pid for w in verifier._pool._state.idle}
            ok = status == Status.CORRECT and not (mine & parent_pids)
            verifier.close()
            os.write(write_fd, b"ok" if ok else status.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 100) == b"ok"
    os.close(read_fd)
    assert verifier.grade("\\boxed{4x}", "2x+2x").status == Status.CORRECT


def _grade_in_daemon(queue) -> None:
    with Verifier(workers=1) as v:
        queue.put(v.grade("\\boxed{\\sqrt{12}}", "2\\sqrt{3}").status)


def test_works_inside_a_daemonic_process():
    """DataLoader-style daemonic processes may not use multiprocessing children."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_grade_in_daemon, args=(queue,), daemon=True)
    proc.start()
    try:
        assert queue.get(timeout=60) == Status.CORRECT
    finally:
        proc.join(10)
