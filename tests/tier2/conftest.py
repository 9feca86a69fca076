"""Tier-2 fixtures (`kwok_cluster`, `k8s_namespace`) live in `fixtures.py` and are registered
in `tests/conftest.py`: one control plane per session, shared with the fault suite."""
