// Package metrics holds caddy-realip's Prometheus metrics, registered in
// Caddy's metrics registry (the admin endpoint's /metrics and the metrics
// handler show them). The collectors live as long as the process and are
// registered again in the registry of each config Caddy loads, so a reload
// neither duplicates nor resets them. No label carries an address.
package metrics

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Results of a connection through the listener wrapper.
const (
	Accepted          = "accepted"           // a trusted sender's header gave the client address
	Local             = "local"              // LOCAL, UNKNOWN, UNSPEC, AF_UNIX or UDP: the peer was kept
	MissingAllowed    = "missing_allowed"    // a trusted sender sent no header; served (missing_header allow)
	MissingRejected   = "missing_rejected"   // a trusted sender sent no header; closed (missing_header reject)
	Malformed         = "malformed"          // a header that does not parse; closed
	Timeout           = "timeout"            // nothing, or part of a header, within timeout
	UntrustedIgnored  = "untrusted_ignored"  // a peer outside trusted_ips, served with its own address
	UntrustedRejected = "untrusted_rejected" // a peer outside trusted_ips, closed (untrusted reject)
)

var results = []string{Accepted, Local, MissingAllowed, MissingRejected, Malformed, Timeout, UntrustedIgnored, UntrustedRejected}

// Results of a range source's refresh (its load at start included).
const (
	SourceUpdated          = "updated"            // a new list is in use
	SourceUnchanged        = "unchanged"          // the list was loaded and is the one in use
	SourceHTTPError        = "http_error"         // no list: connection error, status other than 200, refused redirect, too large
	SourceReadError        = "read_error"         // no list: a file source's file is missing, not a regular file, or too large
	SourceParseError       = "parse_error"        // the list does not parse, or is empty
	SourceTimeout          = "timeout"            // no list within the source's timeout
	SourceRefusedCoversAll = "refused_covers_all" // the list covers every IPv4 or IPv6 address: refused
	SourceRefusedTooMany   = "refused_too_many"   // the list has more ranges than max_ranges: refused
)

var sourceResults = []string{SourceUpdated, SourceUnchanged, SourceHTTPError, SourceReadError, SourceParseError,
	SourceTimeout, SourceRefusedCoversAll, SourceRefusedTooMany}

var (
	once              sync.Once
	proxyHeaders      *prometheus.CounterVec
	requests          *prometheus.CounterVec
	headerRead        *prometheus.HistogramVec
	sourceRefreshes   *prometheus.CounterVec
	sourceRanges      *prometheus.GaugeVec
	sourceLastSuccess *prometheus.GaugeVec
)

func initCollectors() {
	const ns, sub = "caddy", "realip"
	proxyHeaders = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "proxy_headers_total",
		Help: "Connections through the real_ip listener wrapper, by what became of their PROXY header.",
	}, []string{"server", "result"})
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "requests_total",
		Help: "Requests seen by the real_ip handler, by where the client address came from and whether the peer was trusted.",
	}, []string{"server", "source", "trusted"})
	headerRead = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "header_read_seconds",
		Help:    "Time the real_ip listener wrapper took to read and settle a connection's PROXY header.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"server"})
	sourceRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "source_refreshes_total",
		Help: "Loads of a trusted range source's list, by result (refused and failed loads keep the last good list).",
	}, []string{"source", "result"})
	sourceRanges = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "source_ranges",
		Help: "Ranges of a trusted range source's list in use.",
	}, []string{"source"})
	sourceLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "source_last_success_timestamp_seconds",
		Help: "When the list in use by a trusted range source was last loaded successfully (Unix time).",
	}, []string{"source"})
}

// register adds the collectors to the registry of the config being loaded.
func register(ctx caddy.Context) {
	once.Do(initCollectors)
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{proxyHeaders, requests, headerRead, sourceRefreshes, sourceRanges, sourceLastSuccess} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				caddy.Log().Named("real_ip").Error("registering metrics", zap.Error(err))
			}
		}
	}
}

// ServerName is the name of a server in Caddy's http app ("srv0", or the
// name a Caddyfile servers block gives). Caddy keeps it in an unexported
// field and has no accessor, so it is read by reflection; "" if that ever
// fails.
func ServerName(srv *caddyhttp.Server) string {
	if srv == nil {
		return ""
	}
	v := reflect.ValueOf(srv).Elem().FieldByName("name")
	if !v.IsValid() || v.Kind() != reflect.String {
		return ""
	}
	return v.String()
}

// serverLabel names the server of ctx for the server label: its name, or
// its listen addresses if the name cannot be read.
func serverLabel(ctx caddy.Context) string {
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if name := ServerName(srv); name != "" {
		return name
	}
	if srv != nil {
		return strings.Join(srv.Listen, " ")
	}
	return ""
}

// Proxy holds the listener wrapper's counters for one server, looked up
// once so that counting a connection costs a small map lookup and one
// atomic add.
type Proxy struct {
	byResult map[string]prometheus.Counter
	read     prometheus.Observer
}

// ForProxy registers the metrics and returns the wrapper's counters.
func ForProxy(ctx caddy.Context) *Proxy {
	register(ctx)
	server := serverLabel(ctx)
	p := &Proxy{byResult: map[string]prometheus.Counter{}, read: headerRead.WithLabelValues(server)}
	for _, r := range results {
		p.byResult[r] = proxyHeaders.WithLabelValues(server, r)
	}
	return p
}

// Count records a connection's result (one of the constants above).
func (p *Proxy) Count(result string) {
	if p != nil {
		p.byResult[result].Inc()
	}
}

// ObserveRead records how long a header read took, in seconds.
func (p *Proxy) ObserveRead(seconds float64) {
	if p != nil {
		p.read.Observe(seconds)
	}
}

// Requests holds the handler's counters for one server, by source (peer,
// header, proxy_protocol) and trust.
type Requests struct {
	counters [3][2]prometheus.Counter
}

// Sources, in the order Requests indexes them: the handler's sources (peer,
// header, proxy_protocol) by number, and their names everywhere.
var Sources = [3]string{"peer", "header", "proxy_protocol"}

// ForRequests registers the metrics and returns the handler's counters.
func ForRequests(ctx caddy.Context) *Requests {
	register(ctx)
	server := serverLabel(ctx)
	r := &Requests{}
	for i, source := range Sources {
		r.counters[i][0] = requests.WithLabelValues(server, source, "false")
		r.counters[i][1] = requests.WithLabelValues(server, source, "true")
	}
	return r
}

// Count records one request; source indexes Sources.
func (r *Requests) Count(source int, trusted bool) {
	if r == nil {
		return
	}
	t := 0
	if trusted {
		t = 1
	}
	r.counters[source][t].Inc()
}

// Source holds a range source's metrics. Its name is the source label: the
// module and its file, or its URL's host and path (never a query, which can
// carry a key).
type Source struct {
	byResult    map[string]prometheus.Counter
	ranges      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// ForSource registers the metrics and returns those of the named source.
func ForSource(ctx caddy.Context, name string) *Source {
	register(ctx)
	s := &Source{byResult: map[string]prometheus.Counter{},
		ranges: sourceRanges.WithLabelValues(name), lastSuccess: sourceLastSuccess.WithLabelValues(name)}
	for _, r := range sourceResults {
		s.byResult[r] = sourceRefreshes.WithLabelValues(name, r)
	}
	return s
}

// Count records a load's result (one of the Source constants).
func (s *Source) Count(result string) {
	if s != nil {
		s.byResult[result].Inc()
	}
}

// InUse records the list in use: its number of ranges and when it was
// loaded.
func (s *Source) InUse(ranges int, loaded time.Time) {
	if s != nil {
		s.ranges.Set(float64(ranges))
		s.lastSuccess.Set(float64(loaded.UnixNano()) / 1e9)
	}
}
