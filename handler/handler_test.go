package handler

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/conninfo"
)

// provisioned provisions h as Caddy does, on a server (so its metrics are
// counted, as in production).
func provisioned(t testing.TB, h Handler) *Handler {
	t.Helper()
	return provisionedOn(t, h, false)
}

// provisionedOn is provisioned on a server that has the listener wrapper
// when wrapped.
func provisionedOn(t testing.TB, h Handler, wrapped bool) *Handler {
	t.Helper()
	srv := &caddyhttp.Server{Listen: []string{":8080"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.WithValue(context.Background(), caddyhttp.ServerCtxKey, srv)})
	t.Cleanup(cancel)
	if wrapped {
		conninfo.MarkServer(ctx, srv)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return &h
}

// request builds a request as Caddy's server hands it to handlers.
func request(peer string, header http.Header) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest("GET", "http://example.com/path?q=1", nil)
	r.RemoteAddr = peer
	r.Header = header
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, httptest.NewRecorder(), nil)
	return r, repl
}

var nextOK = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

func TestHandler(t *testing.T) {
	xff := Handler{TrustedIPs: []string{"10.0.0.0/8", "2001:db8::/32", "unix:"}, RealIPHeader: "X-Forwarded-For"}
	xffRec := xff
	xffRec.RealIPRecursive = true
	xreal := Handler{TrustedIPs: []string{"10.0.0.0/8"}}
	custom := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "cf-connecting-ip", RealIPRecursive: true}

	cases := []struct {
		name    string
		h       Handler
		peer    string
		headers map[string][]string
		remote  string // r.RemoteAddr afterwards
		source  string
		trusted bool
	}{
		{"untrusted peer", xff, "192.0.2.1:1234", map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}, "192.0.2.1:1234", "peer", false},
		{"trusted, no header", xff, "10.0.0.1:1234", nil, "10.0.0.1:1234", "peer", true},
		{"xff right-most", xff, "10.0.0.1:1234", map[string][]string{"X-Forwarded-For": {"1.1.1.1, 10.0.0.2"}}, "10.0.0.2:0", "header", true},
		{"xff recursive", xffRec, "10.0.0.1:1234", map[string][]string{"X-Forwarded-For": {"1.1.1.1, 10.0.0.2"}}, "1.1.1.1:0", "header", true},
		{"xff recursive stops at untrusted", xffRec, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"1.1.1.1, 2.2.2.2, 10.0.0.2"}}, "2.2.2.2:0", "header", true},
		{"xff recursive all trusted", xffRec, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.2"}}, "10.0.0.5:0", "header", true},
		{"xff several lines", xffRec, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"3.3.3.3", "10.1.1.1, 10.2.2.2"}}, "3.3.3.3:0", "header", true},
		{"xff last line only when not recursive", xff, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"3.3.3.3", "4.4.4.4"}}, "4.4.4.4:0", "header", true},
		{"xff bad right-most", xffRec, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"1.1.1.1, unknown"}}, "10.0.0.1:1", "peer", true},
		{"xff bad after trusted", xffRec, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"unknown, 10.9.9.9"}}, "10.9.9.9:0", "header", true},
		{"xff port", xff, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"1.2.3.4:5678"}}, "1.2.3.4:5678", "header", true},
		{"xff ipv6 port", xff, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"[2001:db9::1]:443"}}, "[2001:db9::1]:443", "header", true},
		{"ipv6 peer", xff, "[2001:db8::9]:1", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", "header", true},
		{"unix peer", xff, "@", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", "header", true},
		{"x-real-ip default", xreal, "10.0.0.1:1", map[string][]string{"X-Real-Ip": {"198.51.100.2"}}, "198.51.100.2:0", "header", true},
		{"x-real-ip first line only", xreal, "10.0.0.1:1", map[string][]string{"X-Real-Ip": {"198.51.100.2", "198.51.100.3"}}, "198.51.100.2:0", "header", true},
		{"x-real-ip ignores xff", xreal, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.2"}}, "10.0.0.1:1", "peer", true},
		{"custom header case-insensitive", custom, "10.0.0.1:1", map[string][]string{"Cf-Connecting-Ip": {"1.1.1.1, 10.0.0.3"}}, "1.1.1.1:0", "header", true},
		{"xff IPv4-mapped entry", xff, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"::ffff:203.0.113.7"}}, "203.0.113.7:0", "header", true},
		{"xff IPv4-mapped entry with port", xff, "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"[::ffff:203.0.113.7]:443"}}, "203.0.113.7:443", "header", true},
		{"mapped peer matches v4 entry", xff, "[::ffff:10.0.0.1]:1", map[string][]string{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1:0", "header", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := provisioned(t, c.h)
			r, repl := request(c.peer, http.Header(c.headers))
			if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
				t.Fatal(err)
			}
			if r.RemoteAddr != c.remote {
				t.Errorf("RemoteAddr %q, want %q", r.RemoteAddr, c.remote)
			}
			if got, _ := repl.GetString("http.real_ip.source"); got != c.source {
				t.Errorf("source %q, want %q", got, c.source)
			}
			if got := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey); got != c.trusted {
				t.Errorf("trusted_proxy %v, want %v", got, c.trusted)
			}
			if c.source == "header" {
				wantIP := hostOf(c.remote)
				if got := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey); got != wantIP {
					t.Errorf("client_ip var %v, want %v", got, wantIP)
				}
				if got, _ := repl.GetString("http.real_ip.client_ip"); got != wantIP {
					t.Errorf("client_ip placeholder %q, want %q", got, wantIP)
				}
			}
			peerIP := hostOf(c.peer)
			if got, _ := repl.GetString("http.real_ip.peer_ip"); got != strings.TrimPrefix(peerIP, "::ffff:") && got != peerIP {
				t.Errorf("peer_ip %q, want %q", got, peerIP)
			}
		})
	}
}

func TestAppliesOncePerRequest(t *testing.T) {
	first := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	r, _ := request("10.0.0.1:1", http.Header{"X-Forwarded-For": {"1.1.1.1, 10.0.0.2"}})
	if err := first.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		// A second real_ip with a config that would trust 1.1.1.1 and read a
		// different header must change nothing.
		second := provisioned(t, Handler{TrustedIPs: []string{"0.0.0.0/0"}, RealIPHeader: "X-Other"})
		r.Header.Set("X-Other", "9.9.9.9")
		return second.ServeHTTP(w, r, nextOK)
	})); err != nil {
		t.Fatal(err)
	}
	if r.RemoteAddr != "1.1.1.1:0" {
		t.Errorf("RemoteAddr %q", r.RemoteAddr)
	}
}

func TestProvisionErrors(t *testing.T) {
	cases := map[string]Handler{
		"trusted_ips is required":       {},
		"got 'bogus'":                   {TrustedIPs: []string{"10.0.0.1", "bogus"}},
		"'X Bad' is not a valid header": {TrustedIPs: []string{"10.0.0.1"}, RealIPHeader: "X Bad"},
	}
	for want, h := range cases {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want error containing %q, got %v", want, err)
		}
	}
}

func TestUpstreamPlaceholders(t *testing.T) {
	h := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	r, repl := request("10.0.0.1:1", http.Header{
		"X-Forwarded-For":   {"1.1.1.1, 10.0.0.2"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"public.example"},
	})
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"x_real_ip":          "1.1.1.1",
		"x_forwarded_for":    "1.1.1.1, 10.0.0.2, 10.0.0.1",
		"x_forwarded_proto":  "https",
		"x_forwarded_host":   "public.example",
		"x_forwarded_path":   "/path",
		"x_forwarded_prefix": "",
	}
	for k, v := range want {
		if got, _ := repl.GetString("http.real_ip.upstream." + k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}

	// From an untrusted peer the incoming X-Forwarded-* are not kept.
	r, repl = request("192.0.2.1:1", http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"}})
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"x_forwarded_proto": "http", "x_forwarded_host": "example.com", "x_forwarded_for": "192.0.2.1", "x_real_ip": "192.0.2.1"} {
		if got, _ := repl.GetString("http.real_ip.upstream." + k); got != v {
			t.Errorf("untrusted %s: %q, want %q", k, got, v)
		}
	}
}

// benchRequests hands out requests for benchmarks: one prepared request,
// with the handler's changes undone and a fresh replacer each time, as
// Caddy's server makes one per request. BenchmarkRequestSetup measures that
// set-up alone; the handler's cost is the difference.
func benchRequests(peer string, header http.Header) func() *http.Request {
	base, _ := request(peer, header)
	vars := base.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	parent := base.Context()
	return func() *http.Request {
		delete(vars, appliedVarKey)
		repl := caddy.NewReplacer()
		// Caddy's server adds its HTTP placeholders to every request's
		// replacer before the handlers run; so does this.
		repl.Map(func(string) (any, bool) { return nil, false })
		r := base.WithContext(context.WithValue(parent, caddy.ReplacerCtxKey, repl))
		r.RemoteAddr = peer
		return r
	}
}

var benchXFF = http.Header{"X-Forwarded-For": {"203.0.113.7, 198.51.100.1, 10.1.1.1, 172.16.5.5, 10.2.2.2"}}

func BenchmarkRequestSetup(b *testing.B) {
	next := benchRequests("10.0.0.1:34567", benchXFF)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := nextOK.ServeHTTP(w, next()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHandlerXFF5Recursive(b *testing.B) {
	h := provisioned(b, Handler{TrustedIPs: []string{"10.0.0.0/8", "172.16.0.0/12"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	h.logger, h.debug = zap.NewNop(), false // Caddy logs at INFO unless told otherwise: no decision lines
	next := benchRequests("10.0.0.1:34567", benchXFF)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := next()
		if err := h.ServeHTTP(w, r, nextOK); err != nil {
			b.Fatal(err)
		}
		if r.RemoteAddr != "198.51.100.1:0" {
			b.Fatalf("RemoteAddr %q", r.RemoteAddr)
		}
	}
}

func BenchmarkHandlerUntrustedPeer(b *testing.B) {
	h := provisioned(b, Handler{TrustedIPs: []string{"10.0.0.0/8", "172.16.0.0/12"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	h.logger, h.debug = zap.NewNop(), false // Caddy logs at INFO unless told otherwise: no decision lines
	next := benchRequests("192.0.2.1:34567", benchXFF)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := h.ServeHTTP(w, next(), nextOK); err != nil {
			b.Fatal(err)
		}
	}
}

// Without the listener wrapper, the PROXY placeholders are known and empty,
// and a name that is not one of them is left alone.
func TestProxyProtocolPlaceholdersWithoutWrapper(t *testing.T) {
	h := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}})
	r, repl := request("10.0.0.1:1", http.Header{})
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"conn_ip", "conn_port", "version", "aws_vpce_id", "ssl.cn"} {
		if v, ok := repl.GetString("http.real_ip.proxy_protocol." + name); !ok || v != "" {
			t.Errorf("%s: %q, %v; want empty and known", name, v, ok)
		}
	}
	if _, ok := repl.Get("http.real_ip.proxy_protocol.bogus"); ok {
		t.Error("an unknown name is answered")
	}
}

func TestTrustedChain(t *testing.T) {
	xff := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true}
	xffLast := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For"}
	hops := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For", RealIPTrustedHops: 1}
	fwd := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "Forwarded", RealIPRecursive: true}
	cases := []struct {
		name string
		h    Handler
		peer string
		hdr  http.Header
		want string
	}{
		{"forged entries dropped", xff, "10.0.0.2:1", http.Header{"X-Forwarded-For": {"192.0.2.66, 203.0.113.7:5555, 10.0.1.5"}}, "203.0.113.7, 10.0.1.5, 10.0.0.2"},
		{"several lines", xff, "10.0.0.2:1", http.Header{"X-Forwarded-For": {"192.0.2.66", "203.0.113.7", "10.0.1.5, 10.0.1.6"}}, "203.0.113.7, 10.0.1.5, 10.0.1.6, 10.0.0.2"},
		{"recursive off", xffLast, "10.0.0.2:1", http.Header{"X-Forwarded-For": {"192.0.2.66, 203.0.113.7"}}, "203.0.113.7, 10.0.0.2"},
		{"untrusted peer", xff, "198.51.100.4:1", http.Header{"X-Forwarded-For": {"192.0.2.66"}}, "198.51.100.4"},
		{"no header", xff, "10.0.0.2:1", http.Header{}, "10.0.0.2"},
		{"stopped by an unparsable entry", xff, "10.0.0.2:1", http.Header{"X-Forwarded-For": {"192.0.2.66, unknown, 10.0.1.5"}}, "10.0.1.5, 10.0.0.2"},
		{"hops", hops, "10.0.0.2:1", http.Header{"X-Forwarded-For": {"192.0.2.66, 203.0.113.7, 198.51.100.9"}}, "203.0.113.7, 198.51.100.9, 10.0.0.2"},
		{"Forwarded", fwd, "10.0.0.2:1", http.Header{"Forwarded": {`for=192.0.2.66, for="[2001:db8::7]:443";proto=https, for=10.0.1.5`}}, "2001:db8::7, 10.0.1.5, 10.0.0.2"},
	}
	for _, c := range cases {
		h := provisioned(t, c.h)
		r, repl := request(c.peer, c.hdr)
		if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
			t.Fatal(err)
		}
		if got, _ := repl.GetString("http.real_ip.trusted_chain"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Kong's port_maps: a request on listen port 8000 reports host port 80
// upstream; a trusted peer's X-Forwarded-Port still wins, an untrusted
// one's does not.
func TestPortMaps(t *testing.T) {
	h := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, PortMaps: []string{"80:8000, 443:8443"}})
	on := func(peer, listen string, header http.Header) string {
		r, repl := request(peer, header)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(listen))))
		if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
			t.Fatal(err)
		}
		got, _ := repl.GetString("http.real_ip.upstream.x_forwarded_port")
		return got
	}
	for _, c := range []struct {
		peer, listen string
		header       http.Header
		want         string
	}{
		{"192.0.2.1:1", "192.0.2.10:8000", http.Header{}, "80"},
		{"192.0.2.1:1", "192.0.2.10:8443", http.Header{}, "443"},
		{"192.0.2.1:1", "192.0.2.10:9000", http.Header{}, "9000"},
		{"192.0.2.1:1", "192.0.2.10:8000", http.Header{"X-Forwarded-Port": {"8888"}}, "80"},
		{"10.0.0.1:1", "192.0.2.10:8000", http.Header{"X-Forwarded-Port": {"8000"}}, "8000"},
	} {
		if got := on(c.peer, c.listen, c.header); got != c.want {
			t.Errorf("peer %s on %s %v: x_forwarded_port %q, want %q", c.peer, c.listen, c.header, got, c.want)
		}
	}
	for _, bad := range []string{"80", "80:x", "0:8000", "80:8000:1"} {
		if _, err := ParsePortMaps([]string{bad}); err == nil || !strings.Contains(err.Error(), "invalid port mapping (`port_maps`)") {
			t.Errorf("port_maps %q: %v", bad, err)
		}
	}
}

// rewrite_forwarded_headers: a later handler sees only what trusted hops
// wrote; the placeholders still describe the request as it came.
func TestRewriteForwardedHeaders(t *testing.T) {
	h := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true, RewriteForwardedHeaders: true})
	for _, c := range []struct {
		name, peer string
		header     http.Header
		want       http.Header // after the handler; absent keys must be absent
	}{
		{"trusted, a forged entry left of the client", "10.0.0.1:1", http.Header{
			"X-Forwarded-For": {"192.0.2.66, 203.0.113.7, 10.0.0.2"}, "X-Real-Ip": {"192.0.2.66"}, "X-Forwarded-Proto": {"https"},
			"Forwarded": {"for=192.0.2.66, for=203.0.113.7"}},
			http.Header{"X-Forwarded-For": {"203.0.113.7, 10.0.0.2, 10.0.0.1"}, "X-Real-Ip": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"},
				"Forwarded": {"for=203.0.113.7, for=10.0.0.2, for=10.0.0.1"}}},
		{"trusted, no header", "10.0.0.1:1", http.Header{},
			http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Real-Ip": {"10.0.0.1"}}},
		{"untrusted: everything it wrote goes", "192.0.2.1:1", http.Header{
			"X-Forwarded-For": {"198.51.100.9"}, "X-Real-Ip": {"198.51.100.9"}, "Forwarded": {"for=198.51.100.9"},
			"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Port": {"1"}, "X-Forwarded-Prefix": {"/x"}},
			http.Header{}},
		{"trusted IPv6 chain in Forwarded", "10.0.0.1:1", http.Header{"X-Forwarded-For": {"2001:db8::7"}, "Forwarded": {`for="[2001:db8::7]"`}},
			http.Header{"X-Forwarded-For": {"2001:db8::7, 10.0.0.1"}, "X-Real-Ip": {"2001:db8::7"}, "Forwarded": {`for="[2001:db8::7]", for=10.0.0.1`}}},
	} {
		r, repl := request(c.peer, c.header.Clone())
		var seen http.Header
		next := caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error { seen = r.Header.Clone(); return nil })
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
		for _, name := range forwardingHeaders {
			if got, want := seen.Values(name), c.want.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("%s: %s %q, want %q", c.name, name, got, want)
			}
		}
		// The placeholders describe what arrived.
		if xff := c.header.Get("X-Forwarded-For"); xff != "" {
			if got, _ := repl.GetString("http.real_ip.upstream.x_forwarded_for"); !strings.HasPrefix(got, xff) {
				t.Errorf("%s: upstream.x_forwarded_for %q, want the incoming %q first", c.name, got, xff)
			}
		}
	}
	// Off by default: nothing changes.
	plain := provisioned(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For"})
	r, _ := request("192.0.2.1:1", http.Header{"X-Forwarded-For": {"198.51.100.9"}})
	var seen http.Header
	_ = plain.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error { seen = r.Header; return nil }))
	if seen.Get("X-Forwarded-For") != "198.51.100.9" {
		t.Errorf("without the option the header changed: %v", seen)
	}
}
