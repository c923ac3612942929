# Sourced by the scripts that build what the tests run from pinned Go modules (test/control-plane/build.sh,
# test/apps/build.sh): the Go settings, the cache outside the clone, and one build at a time.
# shellcheck shell=bash

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

# require_go WHAT: stops with a message naming what needs Go when it is not on the PATH.
require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "error: go is not on the PATH; the end-to-end tests build $1 with Go >= 1.26" >&2
    exit 1
  fi
}

# The cache's root: CRI_CACHE_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/config-reloader-injector.
cache="${CRI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/config-reloader-injector}"

# exit_if_built KIND: prints $out and exits when the caller's built() says the binaries are there; otherwise waits
# for any other build of KIND (test files may ask at once), and checks again, since that build may have made them.
# The lock is held until the calling script exits.
exit_if_built() {
  if built; then
    echo "$out"
    exit 0
  fi
  mkdir -p "$cache/$1"
  exec 9>"$cache/$1/.build.lock"
  flock 9
  if built; then
    echo "$out"
    exit 0
  fi
}
