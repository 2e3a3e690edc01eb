package handler

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-realip/realip/internal/conninfo"
)

// fakeConn is a connection whose RemoteAddr is the wrapper's.
type fakeConn struct {
	net.Conn
	addr *conninfo.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.addr }

// parseHeader reads a PROXY header given as text (v1) or hex (v2).
func parseHeader(t testing.TB, raw string) *proxyproto.Header {
	t.Helper()
	b := []byte(raw)
	if raw[0] != 'P' {
		var err error
		if b, err = hex.DecodeString(raw); err != nil {
			t.Fatal(err)
		}
	}
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return h
}

// wrappedRequest is a request on a connection from physical that carried
// header (nil: none), as the listener wrapper reports it.
func wrappedRequest(t testing.TB, physical string, header *proxyproto.Header, headers http.Header) (*http.Request, *caddy.Replacer) {
	t.Helper()
	phys := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(physical))
	info := conninfo.Info{Physical: phys, Trusted: true, Header: header}
	var client net.Addr = phys
	if header != nil && header.Command.IsProxy() {
		if src, ok := header.SourceAddr.(*net.TCPAddr); ok {
			info.Source = src.AddrPort()
			client = src
		}
	}
	info.SetClient(client)
	addr := &conninfo.Addr{Ready: func() {}, Info: info}
	r, repl := request(addr.String(), headers)
	r = r.WithContext(conninfo.WithConn(r.Context(), fakeConn{addr: addr}))
	return r, repl
}

// A balancer's header that relays a client it does not name: the
// connection's HTTP headers are that client's, never the balancer's.
func TestRelayedUnknownIsNotTrusted(t *testing.T) {
	xff := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "X-Forwarded-For"}
	pp := Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "proxy_protocol"}
	forged := http.Header{"X-Forwarded-For": {"192.0.2.66"}}
	const (
		v1Unknown = "PROXY UNKNOWN\r\n"
		// v2 PROXY, UDP over IPv4
		v2UDP = "0d0a0d0a000d0a515549540a" + "21" + "12" + "000c" + "cb00710a" + "0a000001" + "d431" + "0050"
		// v2 LOCAL, AF_INET, with an address block
		v2Local = "0d0a0d0a000d0a515549540a" + "20" + "11" + "000c" + "cb00710a" + "0a000001" + "d431" + "0050"
	)
	v2Unix := "0d0a0d0a000d0a515549540a" + "21" + "31" + "00d8" + hex.EncodeToString(append([]byte("/run/client.sock"), make([]byte, 216-16)...))
	cases := []struct {
		name    string
		h       Handler
		header  string
		remote  string // r.RemoteAddr afterwards
		trusted bool   // {http.real_ip.trusted}
		proxy   bool   // trusted_proxy
	}{
		{"xff, v1 UNKNOWN", xff, v1Unknown, "10.0.0.5:4000", false, false},
		{"xff, v2 AF_UNIX", xff, v2Unix, "10.0.0.5:4000", false, false},
		{"xff, v2 UDP", xff, v2UDP, "10.0.0.5:4000", false, false},
		{"pp, v1 UNKNOWN", pp, v1Unknown, "10.0.0.5:4000", true, false},
		{"pp, v2 AF_UNIX", pp, v2Unix, "10.0.0.5:4000", true, false},
		{"pp, v2 UDP", pp, v2UDP, "10.0.0.5:4000", true, false},
		// LOCAL is the balancer's own connection: trusted as it is.
		{"xff, v2 LOCAL", xff, v2Local, "192.0.2.66:0", true, true},
		{"pp, v2 LOCAL", pp, v2Local, "10.0.0.5:4000", true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := provisionedOn(t, c.h, true)
			r, repl := wrappedRequest(t, "10.0.0.5:4000", parseHeader(t, c.header), forged.Clone())
			if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
				t.Fatal(err)
			}
			if r.RemoteAddr != c.remote {
				t.Errorf("RemoteAddr %q, want %q", r.RemoteAddr, c.remote)
			}
			if got, _ := repl.GetString("http.real_ip.trusted"); got != map[bool]string{true: "true", false: "false"}[c.trusted] {
				t.Errorf("trusted %q, want %v", got, c.trusted)
			}
			if got := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey); got != c.proxy {
				t.Errorf("trusted_proxy %v, want %v", got, c.proxy)
			}
			if got, _ := repl.GetString("http.real_ip.upstream.x_forwarded_for"); c.h.mode == modeXFF && !c.proxy && got != "10.0.0.5" {
				t.Errorf("upstream X-Forwarded-For %q, want only the balancer", got)
			}
		})
	}
}

// real_ip_header proxy_protocol where this route does not trust the
// balancer that the wrapper trusts: the client is the balancer, as nginx
// answers (nginx-tests proxy_protocol_ipv6.t, location /t).
func TestProxyProtocolUntrustedBalancerIsTheClient(t *testing.T) {
	h := provisionedOn(t, Handler{TrustedIPs: []string{"192.0.2.0/24"}, RealIPHeader: "proxy_protocol"}, true)
	r, repl := wrappedRequest(t, "10.0.0.5:4000", parseHeader(t, "PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n"), nil)
	if r.RemoteAddr != "203.0.113.9:5555" {
		t.Fatalf("before the handler: %q", r.RemoteAddr)
	}
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
		t.Fatal(err)
	}
	if r.RemoteAddr != "10.0.0.5:4000" {
		t.Errorf("RemoteAddr %q, want the balancer 10.0.0.5:4000", r.RemoteAddr)
	}
	if got := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey); got != "10.0.0.5" {
		t.Errorf("client_ip %v", got)
	}
	for k, want := range map[string]string{"client_ip": "10.0.0.5", "source": "peer", "trusted": "false", "peer_ip": "10.0.0.5"} {
		if got, _ := repl.GetString("http.real_ip." + k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// Trusted: the PROXY source.
	h = provisionedOn(t, Handler{TrustedIPs: []string{"10.0.0.0/8"}, RealIPHeader: "proxy_protocol"}, true)
	r, _ = wrappedRequest(t, "10.0.0.5:4000", parseHeader(t, "PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n"), nil)
	if err := h.ServeHTTP(httptest.NewRecorder(), r, nextOK); err != nil {
		t.Fatal(err)
	}
	if r.RemoteAddr != "203.0.113.9:5555" {
		t.Errorf("trusted balancer: RemoteAddr %q", r.RemoteAddr)
	}
}

func TestProxyProtocolPlaceholderText(t *testing.T) {
	tlv := func(typ byte, v string) string {
		return hex.EncodeToString([]byte{typ, byte(len(v) >> 8), byte(len(v))}) + hex.EncodeToString([]byte(v))
	}
	addrs := "cb00710a" + "0a000001" + "d431" + "0050"
	build := func(cmd string, tlvs ...string) *proxyproto.Header {
		body := addrs
		for _, x := range tlvs {
			body += x
		}
		n := len(body) / 2
		return parseHeader(t, "0d0a0d0a000d0a515549540a"+cmd+"11"+hex.EncodeToString([]byte{byte(n >> 8), byte(n)})+body)
	}
	h := build("21", tlv(0x02, "bücher.example"), tlv(0x30, "blue"), tlv(0x05, "\x00\x01id"))
	cases := map[string]string{
		"authority": "bücher.example", "netns": "blue", "unique_id": "00016964", "src_ip": "203.0.113.10", "dst_port": "80",
	}
	for name, want := range cases {
		if got, _ := proxyProtocolPlaceholder(&conninfo.Info{Header: h}, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	bad := build("21", tlv(0x02, "a\nb"), tlv(0x30, "\xff\xfe"))
	for name, want := range map[string]string{"authority": "610a62", "netns": "fffe"} {
		if got, _ := proxyProtocolPlaceholder(&conninfo.Info{Header: bad}, name); got != want {
			t.Errorf("not text: %s = %q, want %q", name, got, want)
		}
	}
	local := build("20")
	for _, name := range []string{"src_ip", "src_port", "dst_ip", "dst_port"} {
		if got, ok := proxyProtocolPlaceholder(&conninfo.Info{Header: local}, name); !ok || got != "" {
			t.Errorf("LOCAL with an address block: %s = %q", name, got)
		}
	}
	if got, _ := proxyProtocolPlaceholder(&conninfo.Info{Header: local}, "command"); got != "LOCAL" {
		t.Errorf("command %q", got)
	}
}

// The debug line's walk is bounded like its value: a 15 KB header of short
// entries writes a line of a few kilobytes, not 76.
func TestDecisionLineIsBounded(t *testing.T) {
	h := provisioned(t, Handler{TrustedIPs: []string{"0.0.0.0/0"}, RealIPHeader: "X-Forwarded-For", RealIPRecursive: true})
	var b strings.Builder
	for b.Len() < 15000 {
		b.WriteString("10.0.0.1, ")
	}
	b.WriteString("10.0.0.2")
	header := http.Header{"X-Forwarded-For": {b.String()}}
	res := result{source: sourcePeer, peer: netip.MustParseAddrPort("10.0.0.9:1"), peerText: "10.0.0.9:1"}
	var steps []Step
	h.decide(&res, header, &steps)
	if len(steps) < 1000 {
		t.Fatalf("only %d steps", len(steps))
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	buf, err := enc.EncodeEntry(zapcore.Entry{Message: "real_ip decision"}, h.decisionFields(&res, header, steps))
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 4096 {
		t.Errorf("the decision line is %d bytes for a %d-byte header", buf.Len(), b.Len())
	}
	if !strings.Contains(buf.String(), "steps more)") {
		t.Errorf("the line does not say the walk was cut: %s", buf.String())
	}
}
