"""Shared test configuration: quiet TensorFlow, deterministic small thread counts, a repo-local tmp area."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KMP_WARNINGS", "0")
# One process holds Keras 3 (`import keras`) and, for QKeras, tf-keras as `tf.keras`: TensorFlow reads
# TF_USE_LEGACY_KERAS once, at its first import, so it is set here for the whole run (order-independent).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# C-simulation / compilation-based properties are slow per example: no deadline, quiet on slow data generation.
settings.register_profile(
    "hwreshape",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("hwreshape")
