"""The README's demo story, end to end through the local runner."""

import io

import pytest

from imagestreams_local.demo import run


@pytest.mark.e2e
def test_demo_story_passes_every_check():
    out = io.StringIO()
    assert run(out) == 0, out.getvalue()
    text = out.getvalue()
    assert "every check passed" in text and "FAIL" not in text
    assert "IngestFunction: unchanged: head already matches ECR" in text  # the replayed event was harmless
