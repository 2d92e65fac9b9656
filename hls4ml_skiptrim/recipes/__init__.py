"""SkipTrim training recipes (``python -m hls4ml_skiptrim.recipes``) and their data loaders."""
