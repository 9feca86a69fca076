"""Conversion planning (`hashpivot plan`): how many MW of a mining hall to convert to GPUs."""
