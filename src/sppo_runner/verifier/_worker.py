"""Entry point of a verifier worker process (``python -m ...verifier._worker``).

Protocol over stdin/stdout: frames of a 4-byte big-endian length followed by
UTF-8 JSON. The worker first sends ``{"ready": true}``; then for each request
``{"a": answer, "g": gold}`` it replies ``{"s": status}``; ``"k": "reference"`` in a
request asks for the symbolic step of ``verifier.rule=reference`` instead. EOF on stdin ends it.
Only this protocol is spoken: model text is data, never code.
"""

from __future__ import annotations

import os
import sys

from sppo_runner.verifier._protocol import encode_frame, read_frame


def _limit_memory(memory_mb: int) -> None:
    """Caps the address space so a runaway computation dies with MemoryError."""
    if memory_mb <= 0:
        return
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass  # not available on this platform: the parent's timeout still applies


def compare_request(answer: str, gold: str, kind: str = "") -> str:
    """The status of one request; ``kind`` picks the comparison."""
    if kind == "reference":
        from sppo_runner.verifier.reference_sympy import compare_safe as compare_reference

        return compare_reference(answer, gold)
    from sppo_runner.verifier.equivalence import compare_safe

    return compare_safe(answer, gold)


def main() -> None:
    """Serves comparison requests until stdin closes."""
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    # Heavy imports happen before the memory cap so that they are not counted
    # against the per-comparison budget.
    from sppo_runner.verifier.equivalence import compare_safe
    from sppo_runner.verifier.reference_sympy import compare_safe as compare_reference

    memory_mb = int(os.environ.get("SPPO_VERIFIER_WORKER_MB", "1024"))
    # sympy imports much of itself lazily on first use; do that before the cap
    # so the cap measures the comparisons, not the library.
    # The first full simplify() imports sympy.physics.units (about 1 s), which
    # would otherwise eat into the first real comparison's time budget.
    for answer, gold in (("\\sin^2 x+\\cos^2 x", "1"), ("x+1", "y"),
                         ("x<1 \\text{ or } x>2", "(-\\infty,1)\\cup(2,\\infty)")):
        compare_safe(answer, gold)
    compare_reference("sqrt(3)/2", "1/2sqrt(3)")
    _limit_memory(memory_mb)
    stdout.write(encode_frame({"ready": True}))
    while True:
        request = read_frame(stdin)
        if request is None:
            return
        try:
            status = compare_request(str(request["a"]), str(request["g"]), str(request.get("k", "")))
        except BaseException:  # noqa: BLE001 - the reply must always go out
            status = "error"
        stdout.write(encode_frame({"s": status}))


if __name__ == "__main__":
    main()
