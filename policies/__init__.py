"""Built-in hashpivot policies. Each registers under the `hashpivot.policies` entry points.

Policies import only `orchestrator.framework`, `orchestrator.models` and numpy.
"""
