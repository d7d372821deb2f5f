"""Moving bytes: the worker process, its client, and the HTTP body path."""
