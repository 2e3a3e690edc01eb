#!/bin/sh
# The whole test suite: vet and staticcheck, unit and in-process tests, end-to-end tests
# against the Caddy binary built once by ./xcaddy.sh, conformance tests
# against nginx, all under the race detector; then a short run of every fuzz
# target. nginx (Debian's nginx-light) is the reference implementation for
# the conformance tests: it is installed here if missing and we are root.
set -eu
cd "$(dirname "$0")"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing nginx-light (the conformance reference)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >/dev/null; }
	else
		echo "nginx is needed for the conformance tests: sudo apt-get install -y nginx-light" >&2
		exit 1
	fi
fi

FUZZTIME=${FUZZTIME:-10s}

echo "== go vet, staticcheck"
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "== go test -race (the e2e tests' Caddy binary is built with -race too)"
REALIP_RACE=1 go test -race -count=1 -timeout 20m ./...
echo "== fuzz ($FUZZTIME each)"
grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . | while IFS=: read -r file decl; do
	target=$(echo "$decl" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(.*/\1/')
	pkg=./$(dirname "${file#./}")
	echo "-- $target ($pkg)"
	go test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg"
done
echo "== all tests passed"
