package ipsource

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	realipcf "github.com/caddy-realip/realip/caddyfile"
)

// UnmarshalCaddyfile sets up the source from Caddyfile tokens, after
// trusted_ips_source (or Caddy's trusted_proxies):
//
//	published [<url>] {
//	    url      <url>
//	    file     <path>
//	    format   aws|google|lines
//	    service  <names...>
//	    region   <names...>
//	    interval <duration>
//	    timeout  <duration>
//	    max_ranges <n>
//	}
func (p *Published) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module's name
	if d.NextArg() {
		p.URL = d.Val()
		if d.NextArg() {
			return d.Errf("published takes one URL on its line, got extra '%s'", d.Val())
		}
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "url", "file", "format", "interval", "timeout", "max_ranges":
			if err := realipcf.Once(d, seen); err != nil {
				return err
			}
		}
		switch d.Val() {
		case "url":
			v, err := realipcf.OneArg(d)
			if err != nil {
				return err
			}
			p.URL = v
		case "file":
			v, err := realipcf.OneArg(d)
			if err != nil {
				return err
			}
			p.File = v
		case "format":
			v, err := realipcf.Choice(d, FormatAWS, FormatGoogle, FormatLines)
			if err != nil {
				return err
			}
			p.Format = v
		case "service":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			p.Services = append(p.Services, args...)
		case "region":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			p.Regions = append(p.Regions, args...)
		case "interval":
			v, err := realipcf.Duration(d)
			if err != nil {
				return err
			}
			p.Interval = v
		case "timeout":
			v, err := realipcf.Duration(d)
			if err != nil {
				return err
			}
			p.Timeout = v
		case "max_ranges":
			v, err := realipcf.OneArg(d)
			if err != nil {
				return err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("max_ranges takes a positive number of ranges, got '%s'", v)
			}
			p.MaxRanges = n
		default:
			return d.Errf("unrecognized published option '%s' (want url, file, format, service, region, interval, timeout or max_ranges)", d.Val())
		}
	}
	if p.URL != "" && p.File != "" {
		return d.Err("published takes a url or a file, not both")
	}
	if p.URL == "" && p.File == "" {
		return d.Err("published needs a url or a file: the published list of ranges to trust")
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Published)(nil)
