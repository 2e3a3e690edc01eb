package ipset

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// SourcePollInterval is how often a Live set asks its IP sources for their
// ranges. Asking is cheap (sources keep their lists in memory and refresh
// them on their own schedule, and an unchanged list is recognised by its
// identity); a rebuild happens only when a list changed.
const SourcePollInterval = 250 * time.Millisecond

// Live is a module's trusted set when it has IP sources
// (trusted_ips_source): the union of its static trusted_ips and the ranges
// of every source, rebuilt off the request path when a source's ranges
// change and swapped atomically, so a lookup costs one atomic load more
// than with a static set and never waits for a rebuild.
type Live struct {
	static  *Set
	sources []caddyhttp.IPRangeSource
	seen    [][]netip.Prefix // each source's ranges at the last rebuild
	cur     atomic.Pointer[Set]
	logger  *zap.Logger
}

// NewLive builds the first set from static and the sources' current
// ranges.
func NewLive(static *Set, sources []caddyhttp.IPRangeSource, logger *zap.Logger) *Live {
	l := &Live{static: static, sources: sources, seen: make([][]netip.Prefix, len(sources)), logger: logger}
	l.refresh()
	return l
}

// Static wraps a set that never changes.
func Static(s *Set) *Live {
	l := &Live{static: s}
	l.cur.Store(s)
	return l
}

// Load returns the set in force.
func (l *Live) Load() *Set { return l.cur.Load() }

// HasSources reports whether the set can change at runtime.
func (l *Live) HasSources() bool { return len(l.sources) > 0 }

// Run polls the sources every interval until ctx is done, rebuilding the
// set when their ranges change.
func (l *Live) Run(ctx context.Context, interval time.Duration) {
	if len(l.sources) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.refresh()
		}
	}
}

// sourceRequest is what the sources are asked with: Caddy's sources take a
// request, for sources that vary by request; the trusted set does not.
var sourceRequest = new(http.Request)

// refresh asks every source for its ranges and rebuilds the set if any
// changed. It reports whether it rebuilt.
func (l *Live) refresh() bool {
	changed := l.cur.Load() == nil
	for i, src := range l.sources {
		ranges := src.GetIPRanges(sourceRequest)
		if sameSlice(ranges, l.seen[i]) || slices.Equal(ranges, l.seen[i]) {
			continue
		}
		l.seen[i] = ranges
		changed = true
	}
	if !changed {
		return false
	}
	start := time.Now()
	prefixes := append([]netip.Prefix(nil), l.static.prefixes...)
	for _, ranges := range l.seen {
		for _, p := range ranges {
			if !p.IsValid() {
				continue
			}
			prefixes = append(prefixes, unmapPrefix(p).Masked())
		}
	}
	s := FromPrefixes(prefixes, l.static.unix)
	l.cur.Store(s)
	if l.logger != nil && len(l.sources) > 0 {
		l.logger.Info("trusted set rebuilt from trusted_ips and its sources",
			zap.Int("ranges", len(prefixes)), zap.Duration("took", time.Since(start)))
	}
	return true
}

// WithSources is a module's trusted set when it has IP sources: it loads
// the http.ip_sources modules of the module's field (a []json.RawMessage
// with caddy:"namespace=http.ip_sources inline_key=source"), builds the
// union with static, and keeps it current until ctx is done.
func WithSources(ctx caddy.Context, module any, field string, static *Set, logger *zap.Logger) (*Live, error) {
	sources, err := loadSources(ctx, module, field)
	if err != nil {
		return nil, err
	}
	l := NewLive(static, sources, logger)
	go l.Run(ctx, SourcePollInterval)
	return l, nil
}

// loadSources loads the http.ip_sources modules of a module's field.
func loadSources(ctx caddy.Context, module any, field string) ([]caddyhttp.IPRangeSource, error) {
	mods, err := ctx.LoadModule(module, field)
	if err != nil {
		return nil, fmt.Errorf("loading trusted_ips_sources: %w", err)
	}
	var sources []caddyhttp.IPRangeSource
	for _, m := range mods.([]any) {
		src, ok := m.(caddyhttp.IPRangeSource)
		if !ok {
			return nil, fmt.Errorf("trusted_ips_sources: module %T is not an IP range source", m)
		}
		sources = append(sources, src)
	}
	return sources, nil
}

// sameSlice reports whether a and b are the same slice (a source that has
// not changed returns the slice it returned before).
func sameSlice(a, b []netip.Prefix) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
