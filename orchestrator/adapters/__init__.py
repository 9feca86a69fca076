"""hashpivot adapters."""
