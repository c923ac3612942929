#!/usr/bin/env bash
# Builds the real control plane the end-to-end tests run: etcd, kube-apiserver and kube-controller-manager,
# from the Go modules pinned in this folder's go.mod/go.sum, into a cache outside the clone keyed by the
# versions. Does nothing when the binaries are already there. Prints the folder that holds them.
#   npm run cluster:build            (the tests run it on first use)
#   CRI_CACHE_DIR=/path              (default: ${XDG_CACHE_HOME:-$HOME/.cache}/config-reloader-injector)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# shellcheck source=../lib/go-cache.sh
source "$here/../lib/go-cache.sh"

require_go "the Kubernetes control plane"

# The versions come from go.mod, so the cache key follows any change to the pins.
kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
go_version="$(go env GOVERSION)"
sum="$(sha256sum go.sum etcd/main.go | sha256sum | cut -c1-12)"
out="$cache/control-plane/kubernetes-$kube_version-etcd-$etcd_version-$go_version-$sum"

built() { [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/etcd" ]]; }
exit_if_built control-plane

# The version ldflags of Kubernetes' own build (hack/lib/version.sh), so the server reports its real
# version; the build date is the release's commit time from the module proxy, so builds are reproducible.
release_time="$(go mod download -json k8s.io/kubernetes@"$kube_version" | sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' | head -1)"
if [[ -z "$release_time" ]]; then
  release_time="$(go list -m -f '{{.Time}}' k8s.io/kubernetes | sed 's/ +0000 UTC//; s/ /T/; s/$/Z/')"
fi
IFS=. read -r major minor _ <<<"${kube_version#v}"
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X '$pkg.gitVersion=$kube_version' -X '$pkg.gitMajor=$major' -X '$pkg.gitMinor=$minor'"
  ldflags+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$release_time'"
done

tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
start=$SECONDS
echo "building Kubernetes $kube_version and etcd $etcd_version with $go_version into $out (the first build takes 15-30 minutes)" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
echo "kube-apiserver built ($((SECONDS - start)) s)" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
echo "kube-controller-manager built ($((SECONDS - start)) s)" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" ./etcd
echo "etcd built ($((SECONDS - start)) s)" >&2
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
