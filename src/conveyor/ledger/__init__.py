"""The job ledger in PostgreSQL: tables, repository, recorder and outbox relay."""
