# Sourced by docker/build.sh and docker/test.sh: container CLI arguments for this machine kind.
# Nested in a VM with cgroup v1 (hybrid) and capped rlimits, podman's defaults fail here: crun refuses hybrid
# cgroups and both runtimes fail to raise RLIMIT_NOFILE/NPROC to podman's rootful defaults. So, for podman:
# runc when installed, and the current nofile limit / an nproc limit of at most 32768 (higher values are refused).
# CONTAINER_GLOBAL_ARGS / CONTAINER_RUN_ARGS (space-separated) replace these defaults.
command -v "$CLI" >/dev/null || { echo "docker: '$CLI' not found (apt-get install podman, or CONTAINER_CLI=...)" >&2; exit 1; }
GLOBAL_ARGS=()
RUN_ARGS=()
BUILD_ARGS=()
if [ "${CLI##*/}" = podman ]; then
  BUILD_ARGS=(--format docker)  # the OCI format drops SHELL
  command -v runc >/dev/null && GLOBAL_ARGS=(--runtime runc)
  nproc_limit=$(ulimit -u)
  { [ "$nproc_limit" = unlimited ] || [ "$nproc_limit" -gt 32768 ]; } && nproc_limit=32768
  RUN_ARGS=(--ulimit "nofile=$(ulimit -n):$(ulimit -Hn)" --ulimit "nproc=$nproc_limit:$nproc_limit")
fi
# shellcheck disable=SC2206
[ -n "${CONTAINER_GLOBAL_ARGS:-}" ] && GLOBAL_ARGS=($CONTAINER_GLOBAL_ARGS)
# shellcheck disable=SC2206
[ -n "${CONTAINER_RUN_ARGS:-}" ] && RUN_ARGS=($CONTAINER_RUN_ARGS)
true
