"""Cluster mode: a sender queues jobs on SQS, workers (processes or Lambda) run them, and a
DynamoDB table records each job's state and the parts of its upload.

Modules, one responsibility each:

- `config`: the `[cluster]` table (a leaf: the queue, the job table, their tuning).
- `settings`: a cluster config file plus what SSM adds (pairs, one side's keys).
- `messages`: the job message format and the parsing of every inbound shape (pure).
- `aws`: boto3 clients for SQS, DynamoDB and SSM, and their error translation.
- `sqs`: the queue adapter (send in checked batches, receive, visibility, dead-letter queue).
- `dynamodb`: the job table adapter (conditional state changes, parts, status queries).
- `jobqueue`: the `JobQueue` port over a message source and the job table.
- `stores`: S3 stores and copiers of a worker, opened per bucket on first use.
- `fanout`: giant objects split into ranges of parts that many workers copy (their items).
- `ledger`: a worker's uploads and parts in the job table.
- `sender`: `longbow send` (stream the diff, skip jobs already queued, send).
- `service`: `longbow worker`, `cluster-init` and `status --cluster`.
- `metrics`: CloudWatch Embedded Metric Format lines and JSON log lines.
"""
