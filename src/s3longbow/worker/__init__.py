"""The worker: claim a job, keep its lease alive, run the transfer, record the outcome."""
