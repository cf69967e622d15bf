"""Reporting: the tidy run table, summary statistics, the paper's figures and tables, t-SNE and class statistics.

Pure functions over pandas DataFrames and numpy arrays (one concern per module); `output` writes a figure's or a
table's files, and `render` draws a model-grid artefact of the registry (advprune.artefacts) for the CLI.
"""
