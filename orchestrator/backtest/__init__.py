"""hashpivot backtest."""
