"""Job queue and job table: the embedded SQLite adapter (and, in cluster mode, SQS + DynamoDB)."""
