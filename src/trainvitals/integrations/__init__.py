"""Hosts for the `Monitor` inside other trainers: `transformers` and `lightning` (extras)."""
