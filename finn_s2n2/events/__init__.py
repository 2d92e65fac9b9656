"""Event inputs for S2N2 (seed 002): I/Q constellation events and image coding (§2.3, §2.4) and the
DVS background-activity filters of chapter 3.  Submodules are imported on use; this file stays empty of
imports so that each submodule can be loaded on its own."""
