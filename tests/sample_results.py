"""A hand-built RunResult that exercises every branch of the renderers.

Reusable by any test that needs a realistic grading run without running one: two exercises, every
test status, checks with hints, an import error, a "local reference" exercise, a banner, figures
(two in one group, one alone) and hostile student output.
"""

from __future__ import annotations

import base64
import struct
import zlib

from grader.models import MODELS, ModelChoice
from grader.judging.results import (
    CheckResult,
    ExerciseResult,
    FigureArtifact,
    RunResult,
    TestResult,
)

XSS = "<script>alert(1)</script>"


def png_base64(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (0, 114, 178)) -> str:
    """A valid solid-colour PNG, built by hand so the sample needs no plotting library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))  # filter 0 per row
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode("ascii")


def sample_run() -> RunResult:
    """Two exercises, six tests covering passed / failed / not_attempted / timed_out / error."""
    student = FigureArtifact(
        "Student: layer 0 head 7 pattern", png_base64(rgb=(0, 114, 178)), "your pattern", "L0H7"
    )
    reference = FigureArtifact(
        "Reference: layer 0 head 7 pattern", png_base64(rgb=(230, 159, 0)), "reference", "L0H7"
    )
    alone = FigureArtifact("Patching: logit difference", png_base64(6, 5, (86, 180, 233)))

    passed = TestResult(
        nodeid="exercises/01/test_01_tokens.py::test_to_tokens",
        exercise="01",
        name="test_to_tokens",
        title="Tokenise a prompt with BOS",
        max_points=2.0,
        points=2.0,
        status="passed",
        checks=[CheckResult("tokens match", True, expected="[50256, 464]", got="[50256, 464]")],
        captured="hello from the student\n",
        duration=0.12,
    )
    failed = TestResult(
        nodeid="exercises/01/test_01_tokens.py::test_attention_pattern",
        exercise="01",
        name="test_attention_pattern",
        title="Attention pattern of layer 0 head 7",
        max_points=4.0,
        points=1.5,
        status="failed",
        checks=[
            CheckResult("shape", True, weight=1.0, expected="(12, 12)", got="(12, 12)"),
            CheckResult(
                "values",
                False,
                weight=2.0,
                message="pattern differs from the reference\n  12 of 144 elements differ (8.3%)\n"
                "  max abs error 0.41 (atol 1e-4)",
                hint="Is the pattern transposed? Rows are queries, columns are keys.",
                expected="rows sum to 1",
                got="columns sum to 1",
            ),
            CheckResult("causal", True, weight=1.0),
        ],
        output="1 of 3 checks failed\n" + XSS,
        captured=f"debug: {XSS}\n" * 3,
        figures=[student, reference, alone],
        duration=0.8,
    )
    not_attempted = TestResult(
        nodeid="exercises/01/test_01_tokens.py::test_residual",
        exercise="01",
        name="test_residual",
        title="Residual stream norm",
        max_points=2.0,
        status="not_attempted",
        output="not attempted yet: residual_norm still raises NotImplementedError",
    )
    timed_out = TestResult(
        nodeid="exercises/01/test_01_tokens.py::test_loop",
        exercise="01",
        name="test_loop",
        title="Logit lens over every layer",
        max_points=2.0,
        status="timed_out",
        output="stopped after 30 s (limit 30 s)",
        duration=30.0,
    )
    first = ExerciseResult(
        exercise="01",
        title="Tokens & attention <basics>",
        module="exercises/01/tokens.py",
        tests=[passed, failed, not_attempted, timed_out],
        expected_source="fixtures",
        provenance={
            "device": "cuda",
            "gpu": "NVIDIA H100 80GB HBM3",
            "dtype": "float32",
            "torch": "2.4.1",
            "transformer_lens": "4.3.0",
            "transformers": "4.51.0",
            "weights_sha256": "3f1c0ffee",
            "date": "2025-01-02",
            "command": "mechgrade refresh --model gpt2-small",
        },
    )

    broken = [
        TestResult(
            nodeid=f"exercises/02/test_02_induction.py::test_{name}",
            exercise="02",
            name=f"test_{name}",
            title=title,
            max_points=3.0,
            status="error",
            output="the module did not import",
        )
        for name, title in [("scores", "Induction scores"), ("heads", "Find the induction heads")]
    ]
    second = ExerciseResult(
        exercise="02",
        title="Induction heads",
        module="exercises/02/induction.py",
        tests=broken,
        import_error='Traceback (most recent call last):\n  File "exercises/02/induction.py", '
        "line 3\n    def f(:\nSyntaxError: invalid syntax",
        expected_source="local reference",
        provenance={"device": "cpu", "dtype": "float32", "command": "computed at grading time"},
    )

    return RunResult(
        model_id="toy-gpt2",
        model_reason="fallback: gpt2-small not in the local cache",
        device="cpu",
        graded="exercises",
        banner=ModelChoice(MODELS["toy-gpt2"], "fallback: gpt2-small not in the local cache").banner(),
        exercises=[first, second],
        environment={"python": "3.11.2", "torch": "2.4.1", "transformer_lens": "4.3.0"},
        started_at="2025-01-02T10:00:00+00:00",
        execution_time=42.6,
    )


def figure_count(run: RunResult) -> int:
    return sum(len(t.figures) for ex in run.exercises for t in ex.tests)
