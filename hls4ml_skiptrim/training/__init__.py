"""SkipTrim training (Khodamoradi 2021, ch. 4; Weng, Khodamoradi & Kastner): the framework-free schedule,
BN folding, and the Keras/QKeras and PyTorch/Brevitas doors with their recipe CLI."""
