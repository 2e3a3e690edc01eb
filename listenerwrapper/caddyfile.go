package listenerwrapper

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	realipcf "github.com/caddy-realip/realip/caddyfile"
)

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens, inside a
// server's listener_wrappers block:
//
//	real_ip [<trusted_ips...>] {
//	    trusted_ips    <ranges...>
//	    trusted_ips_source <module> ...
//	    timeout        <duration>
//	    missing_header reject|allow
//	    untrusted      ignore|reject|skip
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the wrapper's name
	ips, err := realipcf.InlineTrustedIPs(d)
	if err != nil {
		return err
	}
	lw.TrustedIPs = ips
	seen := map[string]bool{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "trusted_ips":
			ips, err := realipcf.TrustedIPs(d)
			if err != nil {
				return err
			}
			lw.TrustedIPs = append(lw.TrustedIPs, ips...)
		case "trusted_ips_source":
			src, err := realipcf.IPSource(d)
			if err != nil {
				return err
			}
			lw.TrustedIPsSourcesRaw = append(lw.TrustedIPsSourcesRaw, src)
		case "timeout":
			if err := realipcf.Once(d, seen); err != nil {
				return err
			}
			v, err := realipcf.Duration(d)
			if err != nil {
				return err
			}
			lw.Timeout = v
		case "missing_header":
			if err := realipcf.Once(d, seen); err != nil {
				return err
			}
			v, err := realipcf.Choice(d, MissingReject, MissingAllow)
			if err != nil {
				return err
			}
			lw.MissingHeader = v
		case "untrusted":
			if err := realipcf.Once(d, seen); err != nil {
				return err
			}
			v, err := realipcf.Choice(d, UntrustedIgnore, UntrustedReject, UntrustedSkip)
			if err != nil {
				return err
			}
			lw.Untrusted = v
		default:
			return d.Errf("unrecognized real_ip listener wrapper option '%s' (want trusted_ips, trusted_ips_source, timeout, missing_header or untrusted)", d.Val())
		}
	}
	if len(lw.TrustedIPs) == 0 && len(lw.TrustedIPsSourcesRaw) == 0 {
		d.Reset()
		d.Next()
		return d.Err("the real_ip listener wrapper needs trusted_ips: list the load balancers that send PROXY headers, e.g. real_ip 10.0.0.0/8 " + realipcf.EnvHint)
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
