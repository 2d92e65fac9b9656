"""The switches of the fused short-skip layer in hls4ml's convert config, validated in one place.

The plugin is **opt-in**: it does nothing unless the ``hls_config`` handed to an hls4ml converter asks for it.

==================================================  ===============================================================
key                                                 meaning
==================================================  ===============================================================
``hls_config['Model']['ShortSkipFusion']``          ``True``: fuse every qualifying block (the primary door);
                                                    ``False`` or absent: fuse nothing except blocks asked for below
``hls_config['LayerName'][n]['ShortSkipFusion']``   ``True``: this block *must* fuse (a near-miss raises with the
                                                    reason); ``False``: leave this block unfused. ``n`` is any layer
                                                    of the block (Conv2D, BatchNormalization, ReLU or Add).
                                                    Also accepted under ``hls_config['LayerType'][class]``.
``hls_config['Model']['ShortSkipOverflow']``        ``'wrap'`` (default) or ``'error'``: what to do when the Add
                                                    result type cannot hold ``relu_out + skip``
==================================================  ===============================================================

Values are checked strictly: ``ShortSkipFusion`` must be a Python ``bool`` (``0``, ``"False"``, ``"false"`` raise),
and any key that starts with ``ShortSkip`` (case-insensitive) but is not one of the keys above raises
``ValueError`` with the list of valid keys, so a misspelt switch never passes silently.
"""

from __future__ import annotations

from dataclasses import dataclass

#: keys accepted in ``hls_config['Model']``
MODEL_KEYS = ("ShortSkipFusion", "ShortSkipOverflow")
#: keys accepted in ``hls_config['LayerName'][name]`` / ``hls_config['LayerType'][class]``
LAYER_KEYS = ("ShortSkipFusion",)
OVERFLOW_MODES = ("wrap", "error")
_PREFIX = "shortskip"


@dataclass(frozen=True)
class ShortSkipSettings:
    """Validated switches of one conversion."""

    model_fusion: bool | None = None  # hls_config['Model']['ShortSkipFusion']
    layer_requests: bool = False  # some layer has ShortSkipFusion=True
    overflow: str = "wrap"

    @property
    def enabled(self) -> bool:
        """The plugin was asked for (``ShortSkipFusion=True`` on the model or on a layer)."""
        return self.model_fusion is True or self.layer_requests


def _check_section(where: str, section, valid: tuple[str, ...]) -> dict:
    if not isinstance(section, dict):
        return {}
    ours = {}
    for key, value in section.items():
        if not isinstance(key, str) or not key.lower().startswith(_PREFIX):
            continue
        if key not in valid:
            raise ValueError(
                f"{where}[{key!r}]: unknown hls4ml_skiptrim key; valid keys here: {', '.join(valid)}"
            )
        if key == "ShortSkipFusion" and type(value) is not bool:
            raise ValueError(f"{where}[{key!r}] must be True or False (a Python bool), got {value!r}")
        if key == "ShortSkipOverflow" and value not in OVERFLOW_MODES:
            raise ValueError(f"{where}[{key!r}] must be one of {OVERFLOW_MODES}, got {value!r}")
        ours[key] = value
    return ours


def read_settings(hls_config) -> ShortSkipSettings:
    """Validate the short-skip keys of an ``hls_config`` dict (``HLSConfig`` section) and return them."""
    hls_config = hls_config if isinstance(hls_config, dict) else {}
    model = _check_section("hls_config['Model']", hls_config.get("Model"), MODEL_KEYS)
    requests = False
    for group in ("LayerType", "LayerName"):
        entries = hls_config.get(group)
        if not isinstance(entries, dict):
            continue
        for name, section in entries.items():
            ours = _check_section(f"hls_config[{group!r}][{name!r}]", section, LAYER_KEYS)
            requests = requests or ours.get("ShortSkipFusion") is True
    return ShortSkipSettings(
        model_fusion=model.get("ShortSkipFusion"),
        layer_requests=requests,
        overflow=model.get("ShortSkipOverflow", "wrap"),
    )


def settings_of(model) -> ShortSkipSettings:
    """Validated settings of an hls4ml ``ModelGraph`` (read from its config on every call: cheap)."""
    return read_settings(model.config.get_config_value("HLSConfig") or {})
