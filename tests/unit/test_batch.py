import pytest

from imagestreams import batch


def sqs(mid, group):
    return {"messageId": mid, "body": mid, "attributes": {"MessageGroupId": group}}


def test_fifo_failure_skips_only_the_rest_of_its_group():
    seen = []

    def handle(record):
        seen.append(record["messageId"])
        if record["messageId"] == "a1":
            raise RuntimeError("throttled")

    event = {"Records": [sqs("a1", "A"), sqs("b1", "B"), sqs("a2", "A"), sqs("b2", "B")]}
    out = batch.process(event, handle, identifier=batch.sqs_message_id, group=batch.sqs_group)
    assert out == {"batchItemFailures": [{"itemIdentifier": "a1"}, {"itemIdentifier": "a2"}]}
    assert seen == ["a1", "b1", "b2"]  # a2 was never attempted: per-target order holds


def test_stream_failures_are_reported_by_sequence_number():
    records = [{"dynamodb": {"SequenceNumber": str(n)}} for n in (10, 11, 12)]

    def handle(record):
        if record["dynamodb"]["SequenceNumber"] == "11":
            raise ValueError("boom")

    out = batch.process({"Records": records}, handle, identifier=batch.dynamodb_sequence)
    assert out == {"batchItemFailures": [{"itemIdentifier": "11"}]}


def test_all_failed_fails_the_invocation():
    def handle(record):
        raise ValueError("nope")

    with pytest.raises(batch.BatchFailed, match="all 2 records failed"):
        batch.process({"Records": [sqs("a", "A"), sqs("b", "B")]}, handle, identifier=batch.sqs_message_id)


def test_empty_batch_is_fine():
    assert batch.process({"Records": []}, lambda r: None, identifier=batch.sqs_message_id) == {"batchItemFailures": []}


def test_a_batch_running_out_of_time_hands_the_rest_back_untried():
    from imagestreams import batch

    done = []
    records = [{"messageId": f"m{i}", "attributes": {"MessageGroupId": f"g{i}"}} for i in range(4)]
    answer = batch.process({"Records": records}, lambda r: done.append(r["messageId"]),
                           identifier=batch.sqs_message_id, group=batch.sqs_group,
                           out_of_time=lambda: len(done) >= 2)
    assert done == ["m0", "m1"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}


def test_the_first_record_always_runs_even_when_time_is_short():
    from imagestreams import batch

    done = []
    answer = batch.process({"Records": [{"messageId": "m0"}, {"messageId": "m1"}]},
                           lambda r: done.append(r["messageId"]), identifier=batch.sqs_message_id,
                           out_of_time=lambda: True)
    assert done == ["m0"] and answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
