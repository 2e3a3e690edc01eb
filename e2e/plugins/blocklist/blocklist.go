// Package blocklist is a Caddy HTTP handler that refuses the clients it
// lists, by the request's remote address, as block-list plugins do (the
// CrowdSec bouncer's README tells users to write `order crowdsec first`;
// this module's tests write `order blocklist first`).
package blocklist

import (
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Blocklist{})
	httpcaddyfile.RegisterHandlerDirective("blocklist", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		var b Blocklist
		err := b.UnmarshalCaddyfile(h.Dispenser)
		return &b, err
	})
}

// Blocklist answers 403 to the listed client addresses.
type Blocklist struct {
	Addresses []string `json:"addresses,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Blocklist) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.blocklist", New: func() caddy.Module { return new(Blocklist) }}
}

func (b *Blocklist) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	for _, a := range b.Addresses {
		if a == host {
			w.Header().Set("X-Blocked", host)
			w.WriteHeader(http.StatusForbidden)
			return nil
		}
	}
	return next.ServeHTTP(w, r)
}

// UnmarshalCaddyfile reads `blocklist ADDRESS...`.
func (b *Blocklist) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	b.Addresses = d.RemainingArgs()
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Blocklist)(nil)
	_ caddyfile.Unmarshaler       = (*Blocklist)(nil)
)
