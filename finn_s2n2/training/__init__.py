"""Training recipes and data for the S2N2 networks (Khodamoradi 2021, §2.3–§2.4)."""

from hwreshape.extras import require

require("snn", __name__)
