"""Published AWS unit prices, us-east-1, in US dollars: the one table the cost model in ``bench/cost.py`` uses.

Sources (AWS's public price pages, read for this table): the AWS Lambda pricing page (Arm price per GB-second for
the first 7.5 billion GB-seconds a month, and the price per request); the DynamoDB on-demand pricing page (write and
read request units, after the price cut of November 2024) and the DynamoDB section of AWS's "How AWS pricing works"
whitepaper (a strongly consistent read of up to 4 KB is one read unit, a transactional write costs two write units
per item of up to 1 KB); the DynamoDB developer guide on stream usage (Lambda's reads of a table stream are not
billed); the SQS pricing page (FIFO requests, each 64 KB chunk of a request is one request; an empty receive is a
billed request); the EventBridge pricing page (events AWS services publish to the default bus are free; Scheduler
invocations beyond the monthly free tier). Free tiers are listed but the model prices without them (worst case).
"""

from __future__ import annotations

PRICES: dict[str, float] = {
    "lambda_request": 0.20 / 1_000_000,            # per invocation
    "lambda_arm_gb_second": 0.0000133334,          # per GB-s, arm64, first 7.5 B GB-s a month
    "dynamodb_wru": 0.625 / 1_000_000,             # per write request unit, on-demand
    "dynamodb_rru": 0.125 / 1_000_000,             # per read request unit, on-demand
    "dynamodb_stream_read_by_lambda": 0.0,         # a Lambda event source reading the table stream
    "sqs_fifo_request": 0.50 / 1_000_000,          # per request (64 KB chunk), FIFO
    "eventbridge_aws_service_event": 0.0,          # ECR and ECS events on the default bus
    "scheduler_invocation": 1.00 / 1_000_000,      # EventBridge Scheduler, beyond 14 M a month free
}

FREE_TIER_MONTHLY: dict[str, float] = {  # for the text only; the model does not subtract them
    "lambda_requests": 1_000_000,
    "lambda_gb_seconds": 400_000,
    "sqs_requests": 1_000_000,
    "scheduler_invocations": 14_000_000,
}
