#!/bin/sh
# Builds Caddy with this plugin, with pinned versions of Caddy and xcaddy and
# nothing installed globally: only Go and the Go module proxy are needed.
#
#   ./xcaddy.sh build [--output PATH] [more xcaddy build flags]   -> ./caddy
#   ./xcaddy.sh run [caddy run flags]       builds, then runs Caddy
#   ./xcaddy.sh <any other xcaddy command>  passed through to xcaddy
set -eu

CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
XCADDY_VERSION=v0.4.5
PLUGIN=github.com/caddy-realip/realip

here=$(cd "$(dirname "$0")" && pwd)
xcaddy() {
	# The plugin path is not published, so xcaddy gets an explicit
	# zero pseudo-version replaced by this checkout.
	CADDY_VERSION=$CADDY_VERSION go run "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION" "$@"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
build)
	# A later --output given by the caller wins over this default.
	xcaddy build "$CADDY_VERSION" \
		--with "$PLUGIN@v0.0.0-00010101000000-000000000000=$here" \
		--output "$here/caddy" "$@"
	;;
run)
	"$0" build
	exec "$here/caddy" run "$@"
	;;
*)
	xcaddy "$cmd" "$@"
	;;
esac
