"""The append-only, tamper-evident audit log: who did what, when, with ids only."""
