#!/usr/bin/env bash
# Builds the real applications the end-to-end tests reload (vmagent, vmalert, Prometheus) from the Go modules
# pinned in this folder's go.mod/go.sum, into a cache outside the clone keyed by their versions. Does nothing
# when the binaries are already there. Prints the folder that holds them.
#   npm run apps:build               (npm test runs it before the tests)
#   CRI_CACHE_DIR=/path              (default: ${XDG_CACHE_HOME:-$HOME/.cache}/config-reloader-injector)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# shellcheck source=../lib/go-cache.sh
source "$here/../lib/go-cache.sh"

require_go "vmagent, vmalert and Prometheus"

vm_version="$(go list -m -f '{{.Version}}' github.com/VictoriaMetrics/VictoriaMetrics)"
prom_version="$(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
go_version="$(go env GOVERSION)"
sum="$(sha256sum go.sum | cut -c1-12)"
out="$cache/apps/victoriametrics-$vm_version-prometheus-$prom_version-$go_version-$sum"

built() { [[ -x "$out/vmagent" && -x "$out/vmalert" && -x "$out/prometheus" ]]; }
exit_if_built apps

# Prometheus' module major version 0.3XX.Y is its release 3.XX.Y; its version package is set as its own
# Makefile (promu) does, so /api/v1/status/buildinfo reports it.
prom_release="v3.${prom_version#v0.3}"
common=github.com/prometheus/common/version
prom_ldflags="-s -w -X $common.Version=${prom_release#v} -X $common.Branch=release -X $common.Revision=module"
# VictoriaMetrics reads its version from lib/buildinfo.Version (its Makefile's -X flag).
vm_ldflags="-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=vmapp-$vm_version"

tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
start=$SECONDS
echo "building vmagent and vmalert $vm_version and Prometheus $prom_release with $go_version into $out (the first build takes several minutes)" >&2
go build -trimpath -ldflags "$vm_ldflags" -o "$tmp/vmagent" github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent
echo "vmagent built ($((SECONDS - start)) s)" >&2
go build -trimpath -ldflags "$vm_ldflags" -o "$tmp/vmalert" github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert
echo "vmalert built ($((SECONDS - start)) s)" >&2
go build -trimpath -ldflags "$prom_ldflags" -o "$tmp/prometheus" github.com/prometheus/prometheus/cmd/prometheus
echo "prometheus built ($((SECONDS - start)) s)" >&2
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
