"""The fan-out DLQ keeps only a pointer into the table stream, which expires 24 h after the write: a failed
fan-out logs the head record itself, so what was not fanned out can still be seen and replayed."""

from __future__ import annotations

import fanout
import pytest

DIGEST = "sha256:" + "b" * 64
RECORD = {
    "eventName": "MODIFY",
    "dynamodb": {
        "SequenceNumber": "4200",
        "Keys": {"pk": {"S": "S#team/web"}, "sk": {"S": "T#latest#H"}},
        "OldImage": {"kind": {"S": "HEAD"}, "generation": {"N": "1"}},
        "NewImage": {"kind": {"S": "HEAD"}, "stream": {"S": "team/web"}, "tag": {"S": "latest"},
                     "digest": {"S": DIGEST}, "generation": {"N": "2"}, "at": {"S": "2026-11-29T12:00:00+00:00"},
                     "cause": {"S": "push"}, "actor": {"S": "ci"}, "rev": {"N": "2"},
                     "registry": {"S": "123456789012.dkr.ecr.us-east-1.amazonaws.com"}},
    },
}


class Broken:
    def head_moved(self, head):
        raise RuntimeError("SQS is down")


def test_failed_fanout_logs_the_head_record(monkeypatch, caplog):
    monkeypatch.setattr(fanout, "services", lambda: Broken())
    with pytest.raises(RuntimeError):
        fanout.record_handler(RECORD)
    failed = [r for r in caplog.records if r.levelname == "ERROR" and hasattr(r, "new_image")]
    assert failed, caplog.records
    assert failed[0].new_image["digest"] == {"S": DIGEST}
    assert failed[0].keys["pk"] == {"S": "S#team/web"} and failed[0].sequence == "4200"
    assert "deploy --from" in failed[0].getMessage()
