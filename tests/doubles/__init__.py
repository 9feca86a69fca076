"""Test doubles for hashpivot's ports, used by tests and benchmarks, never by a mode.

- k8s.py: `FakeKube`, an in-memory `KubeOps` with the API semantics hashpivot relies
  on, and `merge_patch` (RFC 7386).
- nvml.py: `FakeNvml` / `FakeGpu` / `FakeNodes`, the `Nvml` port in memory.
- asic.py: `SimulatedDriver` / `SimMiner` / `sim_miner`, the `MinerDriver` port without
  sockets.

They live here, outside the `orchestrator` package, so an installed hashpivot carries no
fake and no mode can fall back on one. Ray actors in the tests and benchmarks unpickle
their factories from here: run them from the repository root (pytest and
`python -m bench...` do), so `tests` is importable by the Ray workers too.
"""
