package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-realip/realip/handler"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("real_ip", parseRealIP)
	// Before every standard directive, so that all of them (and the access
	// log) see the client address. nginx runs realip in its first phase too.
	httpcaddyfile.RegisterDirectiveOrder("real_ip", httpcaddyfile.Before, "tracing")
}

// parseRealIP sets up the real_ip handler from Caddyfile tokens:
//
//	real_ip [<matcher>] [<trusted_ips...>] {
//	    trusted_ips       <ranges...>
//	    real_ip_header    <header>|proxy_protocol
//	    real_ip_recursive on|off
//	}
func parseRealIP(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd := new(handler.Handler)
	if err := UnmarshalHandler(h.Dispenser, hd); err != nil {
		return nil, err
	}
	return hd, nil
}

// UnmarshalHandler fills hd from a real_ip directive.
func UnmarshalHandler(d *caddyfile.Dispenser, hd *handler.Handler) error {
	d.Next() // the directive's name
	ips, err := InlineTrustedIPs(d)
	if err != nil {
		return err
	}
	hd.TrustedIPs = ips
	seen := map[string]bool{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "trusted_ips":
			ips, err := TrustedIPs(d)
			if err != nil {
				return err
			}
			hd.TrustedIPs = append(hd.TrustedIPs, ips...)
		case "real_ip_header":
			if err := Once(d, seen); err != nil {
				return err
			}
			v, err := OneArg(d)
			if err != nil {
				return err
			}
			hd.RealIPHeader = v
		case "real_ip_recursive":
			if err := Once(d, seen); err != nil {
				return err
			}
			v, err := OnOff(d)
			if err != nil {
				return err
			}
			hd.RealIPRecursive = v
		default:
			return d.Errf("unrecognized real_ip option '%s' (want trusted_ips, real_ip_header or real_ip_recursive)", d.Val())
		}
	}
	if d.Next() {
		return d.Errf("unexpected token '%s' after the real_ip block", d.Val())
	}
	if len(hd.TrustedIPs) == 0 {
		d.Reset()
		d.Next() // report it at the directive
		return d.Err("real_ip needs trusted_ips: list the load balancers or proxies whose headers are believed, e.g. real_ip 10.0.0.0/8")
	}
	return nil
}
