package caddyfile

import (
	"strconv"
	"strings"

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
//	    trusted_ips_source <module> ...
//	    real_ip_header    <header>|proxy_protocol
//	    real_ip_recursive on|off
//	    real_ip_trusted_hops <n>
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
		case "trusted_ips_source":
			src, err := IPSource(d)
			if err != nil {
				return err
			}
			hd.TrustedIPsSourcesRaw = append(hd.TrustedIPsSourcesRaw, src)
		case "real_ip_header":
			if err := Once(d, seen); err != nil {
				return err
			}
			v, err := headerName(d)
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
			hd.RealIPRecursive = handler.Recursive(v)
		case "real_ip_trusted_hops":
			if err := Once(d, seen); err != nil {
				return err
			}
			v, err := OneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("real_ip_trusted_hops takes a number of proxies, 0 or more, got '%s'", v)
			}
			hd.RealIPTrustedHops = n
		case "rewrite_forwarded_headers":
			if err := Once(d, seen); err != nil {
				return err
			}
			v := true
			if d.NextArg() {
				d.Prev()
				on, err := OnOff(d)
				if err != nil {
					return err
				}
				v = on
			}
			hd.RewriteForwardedHeaders = v
		case "port_maps":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("port_maps takes HOST_PORT:LISTEN_PORT pairs, such as port_maps 80:8000 443:8443")
			}
			if _, err := handler.ParsePortMaps(args); err != nil {
				return d.Errf("%v", err)
			}
			hd.PortMaps = append(hd.PortMaps, args...)
		default:
			return d.Errf("unrecognized real_ip option '%s' (want trusted_ips, trusted_ips_source, real_ip_header, real_ip_recursive, real_ip_trusted_hops, port_maps or rewrite_forwarded_headers)", d.Val())
		}
	}
	if d.Next() {
		return d.Errf("unexpected token '%s' after the real_ip block", d.Val())
	}
	if len(hd.TrustedIPs) == 0 && len(hd.TrustedIPsSourcesRaw) == 0 {
		d.Reset()
		d.Next() // report it at the directive
		return d.Err("real_ip needs trusted_ips: list the load balancers or proxies whose headers are believed, e.g. real_ip 10.0.0.0/8 " + EnvHint)
	}
	return nil
}

// headerName reads real_ip_header's one argument and checks it where it
// stands, so a misspelt proxy_protocol is reported with its line.
func headerName(d *caddyfile.Dispenser) (string, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 0:
		return "", d.ArgErr()
	case len(args) > 1:
		if joined := strings.Join(args, " "); handler.LooksLikeProxyProtocol(joined) {
			return "", d.Errf("real_ip_header takes one argument, got '%s': write proxy_protocol (one word, with an underscore) to take the client from the PROXY header", joined)
		}
		return "", d.Errf("real_ip_header takes one argument, got extra '%s'", args[1])
	}
	if _, err := handler.CheckHeaderName(args[0]); err != nil {
		return "", d.Errf("%v", err)
	}
	return args[0], nil
}
