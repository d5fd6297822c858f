"""The exact-response cache (opt-in): complete responses to deterministic requests."""
