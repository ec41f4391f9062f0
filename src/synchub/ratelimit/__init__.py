"""Per-tenant rate limits, quotas and concurrency slots (STANDARDS.md §2, issue "Fair use")."""
