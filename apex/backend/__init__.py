"""The backend: threads and messages in SQLite, the supervisor agent and its sub-agents."""
