#!/bin/bash
# Entrypoint of the debootstrap base image (FINN images keep their own finn_entrypoint.sh, which does the same):
# source the Vivado / Vitis HLS / Vitis settings when they are mounted, then run the command.
# Follows FINN's run-docker.sh conventions: FINN_XILINX_PATH + FINN_XILINX_VERSION, or XILINX_VIVADO,
# XILINX_HLS and XILINX_VITIS pointing at an installation.
set -e
settings=()
if [ -n "${FINN_XILINX_PATH:-}" ] && [ -n "${FINN_XILINX_VERSION:-}" ]; then
  for tool in Vivado Vitis_HLS Vitis; do
    settings+=("$FINN_XILINX_PATH/$tool/$FINN_XILINX_VERSION/settings64.sh")
  done
fi
for root in "${XILINX_VIVADO:-}" "${XILINX_HLS:-}" "${XILINX_VITIS:-}"; do
  [ -n "$root" ] && settings+=("$root/settings64.sh")
done
for s in "${settings[@]}"; do
  if [ -f "$s" ]; then
    # shellcheck disable=SC1090
    source "$s"
    echo "hwreshape-entrypoint: sourced $s" >&2
  fi
done
exec "$@"
