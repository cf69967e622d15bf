"""Reporting: the tidy run table, summary statistics, the paper's figures and tables, t-SNE and class statistics.

Pure functions over pandas DataFrames and numpy arrays (one concern per module); `commands` holds the thin entry
points the CLI calls.
"""
