#!/bin/sh
# Builds the Kubernetes components the cluster tests run (kube-apiserver and
# kube-proxy, from k8s.io/kubernetes through the Go module proxy) into a
# cache keyed by version, once; prints the folder that holds them. A cold
# build takes several minutes on 2 cores; a warm one returns at once.
#
#   REALIP_KUBE_CACHE  where the cache lives (default ~/.cache/caddy-realip)
set -eu
cd "$(dirname "$0")"
version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' go.mod)
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
dir=${REALIP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/caddy-realip}/kubernetes-$version
mkdir -p "$dir"
for cmd in kube-apiserver kube-proxy; do
	if [ ! -x "$dir/$cmd" ]; then
		echo "building $cmd $version into $dir (once; several minutes cold)" >&2
		# -trimpath and no debug info: smaller binaries, same behaviour.
		CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
		mv "$dir/$cmd.tmp" "$dir/$cmd"
	fi
done
echo "$dir"
