// Package ipsource is the http.ip_sources.published module: trusted ranges
// from a published list (AWS's ip-ranges.json, Google's cloud.json and
// goog.json, Cloudflare's ips-v4/ips-v6, any one-range-a-line text), kept
// current and kept in Caddy's storage, for trusted_ips_source of the
// real_ip handler and listener wrapper (and for Caddy's own trusted_proxies).
package ipsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Published{})
}

// List formats.
const (
	FormatAWS    = "aws"    // ip-ranges.json: prefixes[].ip_prefix, ipv6_prefixes[].ipv6_prefix, with region and service
	FormatGoogle = "google" // cloud.json / goog.json: prefixes[].ipv4Prefix / ipv6Prefix, with service and scope
	FormatLines  = "lines"  // one address or CIDR a line; blank lines and # comments ignored

	defaultInterval = time.Hour
	maxListSize     = 64 << 20
)

// Published is a trusted-range source that loads a published list from a
// URL or a file, refreshes it every Interval, and keeps the last good list
// in Caddy's storage, so that every replica sharing a storage module starts
// with it even when the list's server is down. An empty or unparseable
// download is never trusted: the last good list stays, and the failure is
// logged. With neither a download nor a stored list at start, the config
// does not load.
type Published struct {
	// Where the list is: an http(s) URL, or a file (exactly one of them).
	URL  string `json:"url,omitempty"`
	File string `json:"file,omitempty"`

	// aws, google or lines; detected from the content when empty.
	Format string `json:"format,omitempty"`

	// For AWS and Google lists: keep only ranges of these services
	// (AWS "service", Google "service") and regions (AWS "region", Google
	// "scope"), compared case-insensitively. Empty keeps all.
	Services []string `json:"services,omitempty"`
	Regions  []string `json:"regions,omitempty"`

	// How often the list is loaded again. Default 1h.
	Interval caddy.Duration `json:"interval,omitempty"`

	ranges  *atomic.Pointer[[]netip.Prefix]
	storage certmagic.Storage
	key     string
	logger  *zap.Logger
	client  *http.Client
}

// CaddyModule returns the Caddy module information.
func (Published) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.ip_sources.published",
		New: func() caddy.Module { return new(Published) },
	}
}

// stored is what is kept in Caddy's storage.
type stored struct {
	Source  string   `json:"source"`
	Fetched string   `json:"fetched"`
	Ranges  []string `json:"ranges"`
}

// Provision checks the options and loads the list: downloaded, or else the
// last good one from storage.
func (p *Published) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.ranges = new(atomic.Pointer[[]netip.Prefix])
	switch {
	case (p.URL == "") == (p.File == ""):
		return fmt.Errorf("published: give exactly one of url and file")
	case p.URL != "" && !strings.HasPrefix(p.URL, "https://") && !strings.HasPrefix(p.URL, "http://"):
		return fmt.Errorf("published: url must be http:// or https://, got '%s'", p.URL)
	}
	switch p.Format {
	case "", FormatAWS, FormatGoogle, FormatLines:
	default:
		return fmt.Errorf("published: format must be aws, google or lines (or left out to detect it), got '%s'", p.Format)
	}
	if p.Interval == 0 {
		p.Interval = caddy.Duration(defaultInterval)
	}
	if p.Interval < caddy.Duration(time.Second) {
		return fmt.Errorf("published: interval must be at least 1s, got %s", time.Duration(p.Interval))
	}
	p.client = &http.Client{Timeout: 30 * time.Second}
	if p.storage == nil { // set beforehand only by tests
		p.storage = ctx.Storage()
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{p.URL, p.File, p.Format, strings.Join(p.Services, ","), strings.Join(p.Regions, ",")}, "\n")))
	p.key = "real_ip/published/" + hex.EncodeToString(sum[:8]) + ".json"

	ranges, err := p.load(ctx)
	if err != nil {
		storedRanges, serr := p.loadStored(ctx)
		if serr != nil {
			return fmt.Errorf("published: %s: %v, and no list is stored yet (%v): the list must load once before it can be trusted", p.where(), err, serr)
		}
		p.logger.Warn("published list could not be loaded; using the last good list from storage",
			zap.String("source", p.where()), zap.Error(err), zap.Int("ranges", len(storedRanges)))
		ranges = storedRanges
	} else {
		p.store(ctx, ranges)
	}
	p.ranges.Store(&ranges)
	go p.refreshLoop(ctx)
	return nil
}

// GetIPRanges returns the list in force.
func (p *Published) GetIPRanges(*http.Request) []netip.Prefix {
	if p.ranges == nil {
		return nil
	}
	if r := p.ranges.Load(); r != nil {
		return *r
	}
	return nil
}

func (p *Published) where() string {
	if p.URL != "" {
		return p.URL
	}
	return p.File
}

func (p *Published) refreshLoop(ctx caddy.Context) {
	t := time.NewTicker(time.Duration(p.Interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ranges, err := p.load(ctx)
		if err != nil {
			p.logger.Warn("published list could not be refreshed; keeping the last good list",
				zap.String("source", p.where()), zap.Error(err))
			continue
		}
		if old := p.ranges.Load(); old != nil && slices.Equal(*old, ranges) {
			continue
		}
		p.ranges.Store(&ranges)
		p.store(ctx, ranges)
		p.logger.Info("published list changed", zap.String("source", p.where()), zap.Int("ranges", len(ranges)))
	}
}

// load downloads (or reads) and parses the list.
func (p *Published) load(ctx context.Context) ([]netip.Prefix, error) {
	var body []byte
	if p.File != "" {
		b, err := os.ReadFile(p.File)
		if err != nil {
			return nil, err
		}
		body = b
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
		if err != nil {
			return nil, err
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP status %s", resp.Status)
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxListSize+1))
		if err != nil {
			return nil, err
		}
		if len(body) > maxListSize {
			return nil, fmt.Errorf("list larger than %d bytes", maxListSize)
		}
	}
	return Parse(body, p.Format, p.Services, p.Regions)
}

func (p *Published) store(ctx context.Context, ranges []netip.Prefix) {
	s := stored{Source: p.where(), Fetched: time.Now().UTC().Format(time.RFC3339)}
	for _, r := range ranges {
		s.Ranges = append(s.Ranges, r.String())
	}
	data, _ := json.Marshal(s)
	if err := p.storage.Store(ctx, p.key, data); err != nil {
		p.logger.Warn("could not keep the published list in storage", zap.String("key", p.key), zap.Error(err))
	}
}

func (p *Published) loadStored(ctx context.Context) ([]netip.Prefix, error) {
	data, err := p.storage.Load(ctx, p.key)
	if err != nil {
		return nil, err
	}
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("stored list %s: %w", p.key, err)
	}
	var out []netip.Prefix
	for _, r := range s.Ranges {
		pfx, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, fmt.Errorf("stored list %s: %w", p.key, err)
		}
		out = append(out, pfx)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stored list %s is empty", p.key)
	}
	return out, nil
}

// Parse reads a published list in format (detected when ""), keeping AWS
// and Google ranges of the given services and regions (all when empty). A
// list that does not parse, or that leaves no range, is an error: an empty
// list is never trusted.
func Parse(body []byte, format string, services, regions []string) ([]netip.Prefix, error) {
	if format == "" {
		format = detect(body)
	}
	var raw []string
	switch format {
	case FormatAWS:
		var list struct {
			Prefixes []struct {
				IPPrefix string `json:"ip_prefix"`
				Region   string `json:"region"`
				Service  string `json:"service"`
			} `json:"prefixes"`
			IPv6Prefixes []struct {
				IPv6Prefix string `json:"ipv6_prefix"`
				Region     string `json:"region"`
				Service    string `json:"service"`
			} `json:"ipv6_prefixes"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("aws list: %w", err)
		}
		for _, e := range list.Prefixes {
			if match(e.Service, services) && match(e.Region, regions) {
				raw = append(raw, e.IPPrefix)
			}
		}
		for _, e := range list.IPv6Prefixes {
			if match(e.Service, services) && match(e.Region, regions) {
				raw = append(raw, e.IPv6Prefix)
			}
		}
	case FormatGoogle:
		var list struct {
			Prefixes []struct {
				IPv4Prefix string `json:"ipv4Prefix"`
				IPv6Prefix string `json:"ipv6Prefix"`
				Service    string `json:"service"`
				Scope      string `json:"scope"`
			} `json:"prefixes"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("google list: %w", err)
		}
		for _, e := range list.Prefixes {
			if !match(e.Service, services) || !match(e.Scope, regions) {
				continue
			}
			if e.IPv4Prefix != "" {
				raw = append(raw, e.IPv4Prefix)
			}
			if e.IPv6Prefix != "" {
				raw = append(raw, e.IPv6Prefix)
			}
		}
	case FormatLines:
		for _, line := range strings.Split(string(body), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			raw = append(raw, line)
		}
	default:
		return nil, fmt.Errorf("unknown list format '%s'", format)
	}
	var out []netip.Prefix
	for _, r := range raw {
		pfx, err := caddyhttp.CIDRExpressionToPrefix(r)
		if err != nil {
			return nil, fmt.Errorf("%s list: '%s' is not an address or CIDR", format, r)
		}
		out = append(out, pfx.Masked())
	}
	if len(out) == 0 {
		if len(services) > 0 || len(regions) > 0 {
			return nil, fmt.Errorf("no range in the %s list matches service %v and region %v", format, services, regions)
		}
		return nil, errors.New("the list is empty")
	}
	return out, nil
}

// detect tells an AWS or Google JSON list from a text one.
func detect(body []byte) string {
	trimmed := bytes.TrimSpace(body)
	if !bytes.HasPrefix(trimmed, []byte("{")) {
		return FormatLines
	}
	switch {
	case bytes.Contains(trimmed, []byte(`"ip_prefix"`)), bytes.Contains(trimmed, []byte(`"ipv6_prefix"`)):
		return FormatAWS
	case bytes.Contains(trimmed, []byte(`"ipv4Prefix"`)), bytes.Contains(trimmed, []byte(`"ipv6Prefix"`)):
		return FormatGoogle
	}
	return "unknown JSON"
}

func match(v string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return true
		}
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Published)(nil)
	_ caddyhttp.IPRangeSource = (*Published)(nil)
)
