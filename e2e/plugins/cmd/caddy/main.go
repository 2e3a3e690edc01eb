// Command caddy is Caddy with caddy-realip beside other plugins that judge
// clients by address: github.com/mholt/caddy-ratelimit, and blocklist (in
// this module; a third-party blocking plugin such as the CrowdSec bouncer
// is not served by this workplace's module proxy).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-realip/realip"
	_ "github.com/caddy-realip/realip/e2e/plugins/blocklist"
	_ "github.com/mholt/caddy-ratelimit"
)

func main() { caddycmd.Main() }
