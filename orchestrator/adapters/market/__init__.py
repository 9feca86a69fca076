"""hashpivot adapters market."""
