"""hashpivot: switch a site's hardware between Bitcoin mining and rented AI jobs.

Layers (import downward only, enforced by import-linter):
cli → runtime → adapters | backtest → engine → framework → models/economics/ports.
"""

__version__ = "0.1.0"
