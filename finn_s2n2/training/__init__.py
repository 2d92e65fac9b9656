"""Training recipes and data for the S2N2 networks (Khodamoradi 2021, §2.3–§2.4)."""
