// Package caddyfile holds the Caddyfile syntax of caddy-realip: the real_ip
// HTTP directive (registered and ordered here) and the token parsing shared
// with the listener wrapper's block (address lists, on/off, durations).
// Every error names the offending token and its file and line.
package caddyfile

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-realip/realip/internal/ipset"
)

// TrustedIPs reads the arguments left on the current line as trusted_ips
// entries and checks each one, so a bad entry is reported at its line.
func TrustedIPs(d *caddyfile.Dispenser) ([]string, error) {
	name := d.Val()
	args := d.RemainingArgs()
	if len(ipset.Expand(args)) == 0 {
		return nil, d.Errf("%s got no value: list the addresses or CIDRs to trust after it %s", name, EnvHint)
	}
	if _, _, err := ipset.Parse(args); err != nil {
		var bad *ipset.Error
		if errors.As(err, &bad) {
			return nil, d.Errf("%v", err)
		}
		return nil, d.Err(err.Error())
	}
	return args, nil
}

// EnvHint is added to errors about a trusted_ips that came out empty: the
// Caddyfile replaces an unset {$VAR} with nothing, which is the usual cause.
const EnvHint = "(if it names an environment variable, such as {$KONG_TRUSTED_IPS}, that variable is unset or empty where Caddy runs)"

// InlineTrustedIPs reads the arguments after a directive's or wrapper's
// name (the one-line shorthand for trusted_ips), if there are any.
func InlineTrustedIPs(d *caddyfile.Dispenser) ([]string, error) {
	if !d.NextArg() {
		return nil, nil
	}
	d.Prev()
	return TrustedIPs(d)
}

// OnOff reads exactly one on/off argument; true/false are accepted too.
func OnOff(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	v, err := OneArg(d)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(v) {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s takes on or off, got '%s'", name, v)
}

// OneArg reads exactly one argument.
func OneArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one argument, got extra '%s'", name, d.Val())
	}
	return v, nil
}

// Duration reads exactly one positive duration ("5s", "1m").
func Duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := OneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s takes a positive duration such as 5s, got '%s'", name, v)
	}
	return caddy.Duration(dur), nil
}

// Choice reads exactly one argument that must be one of choices.
func Choice(d *caddyfile.Dispenser, choices ...string) (string, error) {
	name := d.Val()
	v, err := OneArg(d)
	if err != nil {
		return "", err
	}
	for _, c := range choices {
		if v == c {
			return v, nil
		}
	}
	return "", d.Errf("%s takes %s, got '%s'", name, strings.Join(choices, " or "), v)
}

// Once reports an error when a single-valued option is given twice in one
// block; seen tracks the options met so far.
func Once(d *caddyfile.Dispenser, seen map[string]bool) error {
	if seen[d.Val()] {
		return d.Errf("%s is given more than once", d.Val())
	}
	seen[d.Val()] = true
	return nil
}

// IPSource reads "trusted_ips_source <module> [<args...>] [{ ... }]": an
// http.ip_sources module in its Caddyfile form, as Caddy's own
// trusted_proxies reads one, returned as the JSON of a
// trusted_ips_sources entry.
func IPSource(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("trusted_ips_source needs the name of an http.ip_sources module (static, published, or a plugin's, e.g. cloudflare)")
	}
	name := d.Val()
	modID := "http.ip_sources." + name
	unm, err := caddyfile.UnmarshalModule(d, modID)
	if err != nil {
		return nil, err
	}
	if _, ok := unm.(caddyhttp.IPRangeSource); !ok {
		return nil, d.Errf("module %s is not an IP range source", modID)
	}
	return caddyconfig.JSONModuleObject(unm, "source", name, nil), nil
}
