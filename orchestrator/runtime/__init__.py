"""hashpivot runtime."""
