#!/bin/sh
# The whole test suite: vet and staticcheck, unit and in-process tests, end-to-end tests
# against the Caddy binary built once by ./xcaddy.sh, conformance tests
# against nginx, cluster tests (a real kube-apiserver and kube-proxy in
# network namespaces, with HAProxy as the cloud's balancers), all under the
# race detector; then a short run of every fuzz target. What the
# tests need from Debian is installed here if missing and we are root.
set -eu
cd "$(dirname "$0")"

# nginx (Debian's nginx-light) is the reference for the conformance tests;
# the cluster tests (root, for network namespaces) run Debian's etcd and
# HAProxy, and kube-proxy in nftables and in iptables mode.
need=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need="$need haproxy"
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need="$need nftables"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v iptables-restore >/dev/null 2>&1 || [ -x /usr/sbin/iptables-restore ] || need="$need iptables"
if [ -n "$need" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing$need"
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >/dev/null; }
	elif echo "$need" | grep -q nginx; then
		echo "nginx is needed for the conformance tests: sudo apt-get install -y nginx-light" >&2
		exit 1
	else
		echo "note:$need missing; the cluster tests will say how to run them (as root)" >&2
	fi
fi

# A number of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report its own deadline as a failure when a busy worker
# answers late (go.dev/issue/75804, fixed in Go 1.27). 50,000 runs take from
# under a second (the header readers) to about 20 s (FuzzWalk) here. Set
# FUZZTIME=5m (or 10000000x) for a longer hunt.
FUZZTIME=${FUZZTIME:-50000x}

# Each stage says when it starts and how long the run has taken.
start=$(date +%s)
stage() { echo "== [$(( $(date +%s) - start ))s] $*"; }

stage "go vet, staticcheck"
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
if [ "$(id -u)" = 0 ]; then
	stage "kube-apiserver and kube-proxy for the cluster tests (built once, cached by version)"
	REALIP_KUBE_BIN=$(./e2e/kube/build.sh)
	export REALIP_KUBE_BIN
fi
stage "go test -race (the e2e tests' Caddy binary is built with -race too): each package as it finishes, every skipped test, the output of every failure"
rcfile=$(mktemp)
{ REALIP_RACE=1 go test -race -count=1 -timeout 30m -json ./... 2>&1; echo $? >"$rcfile"; } | go run ./internal/testreport || true
rc=$(cat "$rcfile")
rm -f "$rcfile"
[ "$rc" = 0 ] || { echo "go test failed (exit status $rc)"; exit 1; }
stage "examples/kubernetes (a Go module of its own: manifests, Caddyfiles, Dockerfile)"
(cd examples/kubernetes && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./... && go test -count=1 ./...)
stage "e2e/plugins (a Go module of its own: Caddy with caddy-ratelimit and a block list beside the plugin)"
(cd e2e/plugins && go vet ./... && go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./... && go test -count=1 ./...)
stage "fuzz ($FUZZTIME each)"
grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . | while IFS=: read -r file decl; do
	target=$(echo "$decl" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/')
	pkg=./$(dirname "${file#./}")
	echo "-- $target ($pkg)"
	go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg"
done
stage "all tests passed"
