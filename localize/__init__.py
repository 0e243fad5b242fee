"""localize: one frozen base model, a tiny adapter per user."""
