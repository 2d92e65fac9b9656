"""SkipTrim training recipes (``python -m hls4ml_skiptrim.training.recipes``) and their data loaders."""
