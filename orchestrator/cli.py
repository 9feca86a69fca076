"""Command line (placeholder until the CLI lands)."""
