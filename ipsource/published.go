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
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/ipset"
	"github.com/caddy-realip/realip/internal/metrics"
)

func init() {
	caddy.RegisterModule(Published{})
}

// List formats.
const (
	FormatAWS    = "aws"    // ip-ranges.json: prefixes[].ip_prefix, ipv6_prefixes[].ipv6_prefix, with region and service
	FormatGoogle = "google" // cloud.json / goog.json: prefixes[].ipv4Prefix / ipv6Prefix, with service and scope
	FormatLines  = "lines"  // one address or CIDR a line; blank lines and # comments (whole-line or after a range) ignored

	defaultInterval  = time.Hour
	defaultTimeout   = 10 * time.Second
	defaultMaxRanges = 100_000
	maxListSize      = 64 << 20
	maxRedirects     = 10
)

// Published is a trusted-range source that loads a published list from a
// URL or a file, refreshes it every Interval, and keeps the last good list
// in Caddy's storage, so that every replica sharing a storage module starts
// with it even when the list's server is down.
//
// A list is a statement of whom to trust, so a list that would trust too
// much is refused like one that does not parse: an empty or unparseable
// list, one whose ranges cover every IPv4 or every IPv6 address (alone or
// adding up, in any IPv6 form that holds the IPv4 space), or one of more
// than MaxRanges ranges. The last good list stays, a warning names the
// source and the reason, and caddy_realip_source_refreshes_total counts it.
// With neither a good download nor a good stored list at start, the config
// does not load.
type Published struct {
	// Where the list is: an http(s) URL, or a file (exactly one of them).
	// A URL may redirect only to the same scheme and host; a file must be
	// a regular file. Either is read up to 64 MiB.
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

	// How long one download may take, body included. Default 10s. A
	// config load waits for a download only when no list is stored yet,
	// and then at most this long; with a stored list it starts from that
	// list and downloads in the background.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// The most ranges a list may have (after the service and region
	// filters); a longer list is refused. Default 100,000 (AWS's whole
	// ip-ranges.json has about 9,000).
	MaxRanges int `json:"max_ranges,omitempty"`

	ranges    *atomic.Pointer[[]netip.Prefix]
	storage   certmagic.Storage
	key       string
	logger    *zap.Logger
	client    *http.Client
	transport http.RoundTripper // nil: Go's default; set beforehand only by tests
	metrics   *metrics.Source
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

// loadError is a load that gave no list to use, with its metrics result.
type loadError struct {
	result string
	err    error
}

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

func failed(result string, format string, args ...any) *loadError {
	return &loadError{result: result, err: fmt.Errorf(format, args...)}
}

// resultOf is the metrics result of a load's error.
func resultOf(err error) string {
	var le *loadError
	if errors.As(err, &le) {
		return le.result
	}
	return metrics.SourceHTTPError
}

// Provision checks the options and loads the list. A URL source with a
// stored list starts from that list and downloads in the background; one
// without waits at most Timeout for its first download. A file source
// reads its file, or else the stored list.
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
	if p.Timeout == 0 {
		p.Timeout = caddy.Duration(defaultTimeout)
	}
	if p.Timeout < 0 {
		return fmt.Errorf("published: timeout must be positive, got %s", time.Duration(p.Timeout))
	}
	if p.MaxRanges == 0 {
		p.MaxRanges = defaultMaxRanges
	}
	if p.MaxRanges < 0 {
		return fmt.Errorf("published: max_ranges must be positive, got %d", p.MaxRanges)
	}
	p.client = &http.Client{Timeout: time.Duration(p.Timeout), CheckRedirect: sameOrigin, Transport: p.transport}
	if p.storage == nil { // set beforehand only by tests
		p.storage = ctx.Storage()
	}
	p.key = p.storageKey()
	p.metrics = metrics.ForSource(ctx, p.label())

	storedRanges, storedAt, serr := p.loadStored(ctx)
	if serr != nil && !errors.Is(serr, fs.ErrNotExist) {
		p.logger.Warn("the stored copy of the published list is not used", zap.String("source", p.where()), zap.Error(serr))
	}
	if p.URL != "" && serr == nil {
		// Never wait on the network when a good list is at hand: the
		// download goes on in the background.
		p.logger.Info("using the last good list from storage; downloading the list in the background",
			zap.String("source", p.where()), zap.Int("ranges", len(storedRanges)), zap.Time("stored", storedAt))
		p.ranges.Store(&storedRanges)
		p.metrics.InUse(len(storedRanges), storedAt)
		go p.refreshLoop(ctx, true)
		return nil
	}
	ranges, err := p.load(ctx)
	p.metrics.Count(resultOf(err))
	if err != nil {
		if serr != nil {
			return fmt.Errorf("published: %s: %v, and no list is stored yet (%v): the list must load once before it can be trusted", p.where(), err, serr)
		}
		p.logger.Warn("published list could not be loaded; using the last good list from storage",
			zap.String("source", p.where()), zap.Error(err), zap.Int("ranges", len(storedRanges)))
		ranges = storedRanges
		p.metrics.InUse(len(ranges), storedAt)
	} else {
		p.store(ctx, ranges)
		p.metrics.InUse(len(ranges), time.Now())
	}
	p.ranges.Store(&ranges)
	go p.refreshLoop(ctx, false)
	return nil
}

// sameOrigin lets a download follow a redirect only to the same scheme and
// host (port included): a list's server must not send the download to
// another server, nor from https to http.
func sameOrigin(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return fmt.Errorf("redirect to %s://%s%s refused: a list may redirect only to the same scheme and host", req.URL.Scheme, req.URL.Host, req.URL.Path)
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
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

// where names the source in logs and errors: the URL without its query
// (which can carry a key), or the file.
func (p *Published) where() string {
	if p.URL == "" {
		return p.File
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// label is the source label of the metrics: the module, and the URL's host
// and path or the file.
func (p *Published) label() string {
	if p.URL == "" {
		return "published:" + p.File
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return "published:"
	}
	return "published:" + u.Host + u.Path
}

// refreshLoop loads the list every Interval (and at once if now) until the
// config is unloaded.
func (p *Published) refreshLoop(ctx caddy.Context, now bool) {
	t := time.NewTicker(time.Duration(p.Interval))
	defer t.Stop()
	for {
		if !now {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		now = false
		p.refresh(ctx)
	}
}

// refresh loads the list once and puts it in use if it is good and new.
func (p *Published) refresh(ctx caddy.Context) {
	ranges, err := p.load(ctx)
	if ctx.Err() != nil {
		return // unloaded meanwhile: nothing to count
	}
	if err != nil {
		p.metrics.Count(resultOf(err))
		p.logger.Warn("published list could not be refreshed; keeping the last good list",
			zap.String("source", p.where()), zap.String("result", resultOf(err)), zap.Error(err))
		return
	}
	if old := p.ranges.Load(); old != nil && slices.Equal(*old, ranges) {
		p.metrics.Count(metrics.SourceUnchanged)
		p.metrics.InUse(len(ranges), time.Now())
		return
	}
	p.ranges.Store(&ranges)
	p.store(ctx, ranges)
	p.metrics.Count(metrics.SourceUpdated)
	p.metrics.InUse(len(ranges), time.Now())
	p.logger.Info("published list changed", zap.String("source", p.where()), zap.Int("ranges", len(ranges)))
}

// load downloads (or reads), parses and checks the list. Its errors are
// *loadError, with the metrics result.
func (p *Published) load(ctx context.Context) ([]netip.Prefix, error) {
	var body []byte
	var err error
	if p.File != "" {
		body, err = readRegularFile(p.File)
	} else {
		body, err = p.download(ctx)
	}
	if err != nil {
		return nil, err
	}
	ranges, err := Parse(body, p.Format, p.Services, p.Regions)
	if err != nil {
		return nil, &loadError{result: metrics.SourceParseError, err: err}
	}
	return ranges, p.check(ranges)
}

// check refuses a list that would trust too much.
func (p *Published) check(ranges []netip.Prefix) error {
	if len(ranges) > p.MaxRanges {
		return failed(metrics.SourceRefusedTooMany, "refused: the list has %d ranges, more than max_ranges %d", len(ranges), p.MaxRanges)
	}
	switch v4, v6 := ipset.CoversEveryAddress(ranges); {
	case v4 && v6:
		return failed(metrics.SourceRefusedCoversAll, "refused: the list covers every IPv4 and IPv6 address, which would trust every client")
	case v4:
		return failed(metrics.SourceRefusedCoversAll, "refused: the list covers every IPv4 address, which would trust every IPv4 client")
	case v6:
		return failed(metrics.SourceRefusedCoversAll, "refused: the list covers every IPv6 address, which would trust every IPv6 client")
	}
	return nil
}

func (p *Published) download(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return nil, failed(metrics.SourceHTTPError, "%v", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, p.httpFailure(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, failed(metrics.SourceHTTPError, "HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListSize+1))
	if err != nil {
		return nil, p.httpFailure(ctx, err)
	}
	if len(body) > maxListSize {
		return nil, failed(metrics.SourceHTTPError, "list larger than %d bytes", maxListSize)
	}
	return body, nil
}

// httpFailure classifies a failed download: past its timeout, or not.
func (p *Published) httpFailure(ctx context.Context, err error) error {
	var ne net.Error
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return failed(metrics.SourceTimeout, "no list within the timeout of %s", time.Duration(p.Timeout))
	}
	if u := (*url.Error)(nil); errors.As(err, &u) {
		err = u.Err // its URL would repeat the query
	}
	return failed(metrics.SourceHTTPError, "%v", err)
}

// readRegularFile reads a list file of at most maxListSize bytes. It opens
// without blocking and reads only a regular file, so that a FIFO or a
// device (/dev/zero) is an error instead of a hang or an endless read.
func readRegularFile(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, &loadError{result: metrics.SourceReadError, err: err}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &loadError{result: metrics.SourceReadError, err: err}
	}
	if !info.Mode().IsRegular() {
		return nil, failed(metrics.SourceReadError, "%s is not a regular file (%s)", name, info.Mode().Type())
	}
	if info.Size() > maxListSize {
		return nil, failed(metrics.SourceReadError, "%s is larger than %d bytes", name, maxListSize)
	}
	body, err := io.ReadAll(io.LimitReader(f, maxListSize+1))
	if err != nil {
		return nil, &loadError{result: metrics.SourceReadError, err: err}
	}
	if len(body) > maxListSize {
		return nil, failed(metrics.SourceReadError, "%s is larger than %d bytes", name, maxListSize)
	}
	return body, nil
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

// storageKey is where the last good list of this source is kept.
func (p *Published) storageKey() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{p.URL, p.File, p.Format, strings.Join(p.Services, ","), strings.Join(p.Regions, ",")}, "\n")))
	return "real_ip/published/" + hex.EncodeToString(sum[:8]) + ".json"
}

// StorageKey is the storage key under which a published source (its JSON
// config) keeps its last good list.
func StorageKey(config []byte) (string, error) {
	p := new(Published)
	if err := json.Unmarshal(config, p); err != nil {
		return "", err
	}
	return p.storageKey(), nil
}

// StoredRanges reads the last good list a published source (its JSON
// config) keeps in storage, checked as the running source checks it: what
// a running Caddy sharing that storage trusts, for caddy real-ip explain.
func StoredRanges(ctx context.Context, storage certmagic.Storage, config []byte) ([]netip.Prefix, time.Time, error) {
	p := new(Published)
	if err := json.Unmarshal(config, p); err != nil {
		return nil, time.Time{}, err
	}
	if p.MaxRanges == 0 {
		p.MaxRanges = defaultMaxRanges
	}
	p.storage, p.key = storage, p.storageKey()
	return p.loadStored(ctx)
}

// loadStored reads the last good list from storage, and checks it as a
// download is checked: storage can be shared, and written by others.
func (p *Published) loadStored(ctx context.Context) ([]netip.Prefix, time.Time, error) {
	data, err := p.storage.Load(ctx, p.key)
	if err != nil {
		return nil, time.Time{}, err
	}
	var s stored
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, time.Time{}, fmt.Errorf("stored list %s: %w", p.key, err)
	}
	out := make([]netip.Prefix, 0, len(s.Ranges))
	for _, r := range s.Ranges {
		pfx, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("stored list %s: %w", p.key, err)
		}
		out = append(out, pfx.Masked())
	}
	if len(out) == 0 {
		return nil, time.Time{}, fmt.Errorf("stored list %s is empty", p.key)
	}
	if err := p.check(out); err != nil {
		return nil, time.Time{}, fmt.Errorf("stored list %s: %w", p.key, err)
	}
	fetched, _ := time.Parse(time.RFC3339, s.Fetched)
	return out, fetched, nil
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
			// A "#" starts a comment, at the start of a line or after a
			// range ("10.0.0.0/8  # the VPC").
			line, _, _ = strings.Cut(line, "#")
			line = strings.TrimSpace(line)
			if line == "" {
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
