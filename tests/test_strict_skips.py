"""CI turns resource skips into failures (tests/conftest.py, .ci/run)."""

from pathlib import Path

from conftest import STRICT_SKIPS, strict_skip_failure


def test_resource_skips_fail_only_in_strict_mode():
    reason = "real data not available: ../shared/data/ml-100k is missing"
    assert strict_skip_failure(reason, environ={}) is None
    assert strict_skip_failure(reason, environ={STRICT_SKIPS: "0"}) is None
    message = strict_skip_failure(reason, environ={STRICT_SKIPS: "1"})
    assert STRICT_SKIPS in message and "ml-100k is missing" in message
    for missing in ("pyspark is not installed", "Java is not on PATH", "could not import 'httpx'"):
        assert strict_skip_failure(missing, environ={STRICT_SKIPS: "1"}) is not None


def test_benign_skips_stay_skips_in_strict_mode():
    for reason in (
        "SCIPY_ARRAY_API is not set: not checking array_api input",
        "MostPopular ranks every user the same way",
        "long fuzz profile: run with `pytest -m fuzz`",
    ):
        assert strict_skip_failure(reason, environ={STRICT_SKIPS: "1"}) is None


def test_ci_sets_strict_mode():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert f"export {STRICT_SKIPS}=1" in ci


def test_strict_mode_fails_a_skipping_test(pytester, monkeypatch):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        "import pytest\n\ndef test_needs_data():\n    pytest.skip('real data not available')\n"
    )
    monkeypatch.setenv(STRICT_SKIPS, "1")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)
    monkeypatch.setenv(STRICT_SKIPS, "0")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)
