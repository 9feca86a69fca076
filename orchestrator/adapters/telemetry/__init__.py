"""hashpivot adapters telemetry."""
