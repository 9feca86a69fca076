"""Helm chart tests: lint, render, schema and Kubernetes-schema validation."""
