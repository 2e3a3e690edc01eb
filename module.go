// Package realip keeps the real client IP when Caddy runs behind load
// balancers, with Kong Gateway's options and nginx's answers:
//
//   - caddy.listeners.real_ip: the PROXY protocol (v1 and v2) on a server's
//     listeners, Kong's proxy_protocol listen flag;
//   - http.handlers.real_ip (Caddyfile directive real_ip): trusted
//     forwarding headers, Kong's trusted_ips, real_ip_header and
//     real_ip_recursive;
//   - http.ip_sources.published: trusted ranges from a published list
//     (AWS, Google, Cloudflare), kept current and kept in Caddy's storage;
//   - caddy real-ip: commands that import Kong's and ingress-nginx's
//     settings and explain a decision.
//
// Import this package to register every module and the Caddyfile syntax.
package realip

import (
	_ "github.com/caddy-realip/realip/caddyfile"
	_ "github.com/caddy-realip/realip/command"
	_ "github.com/caddy-realip/realip/handler"
	_ "github.com/caddy-realip/realip/ipsource"
	_ "github.com/caddy-realip/realip/listenerwrapper"
)
