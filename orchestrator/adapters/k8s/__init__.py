"""hashpivot adapters k8s."""
