package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-realip/realip/internal/ppvectors"
)

const ppBody = `{http.request.remote.host} {http.request.remote.port}`

// ppServer is the JSON of a server with the real_ip listener wrapper and a
// real_ip handler reading the PROXY source.
func ppServer(listen, wrapperExtra string) string {
	return fmt.Sprintf(`{"listen":[%q],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1","unix:"],"timeout":"1s"%s}],
		"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":["127.0.0.1","unix:"],"real_ip_header":"proxy_protocol"},
			{"handler":"static_response","body":%q}]}]}`, listen, wrapperExtra, ppBody)
}

func TestProxyVectorsTrustedAndUntrusted(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(`{"http":{"servers":{"pp":` + ppServer(addr, "") + `}}}`)
	vectors := loadVectors(t)
	closes, observedCloses := 0, 0
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			got := exchange(t, "tcp", "127.0.0.1", addr, v.Data, 5*time.Second).String()
			if got == "close" {
				observedCloses++
			}
			if got != v.Expect {
				t.Errorf("trusted sender: got %s, want %s", got, v.Expect)
			}
			// From a peer outside trusted_ips (untrusted ignore) a valid
			// header is read and thrown away; a malformed one still closes.
			want := "peer"
			if v.Expect == "close" {
				want = "close"
			}
			if v.Untrusted != "" {
				want = v.Untrusted
			}
			got = exchange(t, "tcp", "127.0.0.2", addr, v.Data, 5*time.Second).String()
			if got != want {
				t.Errorf("untrusted sender: got %s, want %s", got, want)
			}
			if got == "close" {
				observedCloses++
			}
		})
		if v.Expect == "close" {
			closes++
		}
	}
	if closes < 20 {
		t.Errorf("only %d malformed vectors", closes)
	}
	// Every refusal was counted (trusted and untrusted sender alike), and
	// logged with the peer and a reason (at most a line a second per peer
	// and reason: the rest are counted in the next line's "suppressed").
	m := c.scrape()
	refused := m[`caddy_realip_proxy_headers_total{result="malformed",server="pp"}`] + m[`caddy_realip_proxy_headers_total{result="timeout",server="pp"}`] +
		m[`caddy_realip_proxy_headers_total{result="missing_rejected",server="pp"}`]
	if int(refused) != observedCloses {
		t.Errorf("%v refusals counted, %d connections closed", refused, observedCloses)
	}
	if !c.waitLogged(`"msg":"malformed PROXY header"`) {
		t.Errorf("no malformed header logged")
	}
	if !strings.Contains(c.logs.String(), `"peer":"127.0.0.1:`) || !strings.Contains(c.logs.String(), `"reason":"`) {
		t.Errorf("refusals are not logged with peer and reason")
	}
	if got := exchange(t, "tcp", "127.0.0.1", addr, []byte("PROXY TCP4 198.51.100.1 10.0.0.1 1 2\r\n"), 5*time.Second).String(); got != "198.51.100.1:1" {
		t.Errorf("after all vectors: %s", got)
	}
}

func TestProxyPlaceholdersAndTLVs(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	names := []string{"version", "command", "src_ip", "src_port", "dst_ip", "dst_port", "conn_ip",
		"alpn", "authority", "unique_id", "aws_vpce_id", "azure_link_id", "gcp_psc_id",
		"ssl.version", "ssl.cn", "ssl.cipher", "ssl.verified", "netns"}
	var body []string
	for _, n := range names {
		body = append(body, n+"={http.real_ip.proxy_protocol."+n+"}")
	}
	body = append(body, "client_ip={http.vars.client_ip}", "source={http.real_ip.source}", "peer={http.real_ip.peer_ip}")
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"pp":{"listen":[%q],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
		"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":["127.0.0.1"],"real_ip_header":"proxy_protocol"},
			{"handler":"static_response","body":%q}]}]}}}}`, addr, strings.Join(body, " ")))
	byName := map[string]ppvectors.Vector{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v
	}
	cases := map[string]map[string]string{
		"v2 AWS NLB: VPC endpoint TLV": {"version": "2", "command": "PROXY", "src_ip": "203.0.113.9", "src_port": "5555",
			"dst_ip": "10.0.0.1", "dst_port": "443", "conn_ip": "127.0.0.1", "aws_vpce_id": "vpce-0123456789abcdef0",
			"client_ip": "203.0.113.9", "source": "proxy_protocol", "peer": "127.0.0.1", "alpn": ""},
		"v2 ALPN, AUTHORITY, UNIQUE_ID, NOOP": {"alpn": "h2", "authority": "shop.example", "unique_id": "req-42"},
		"v2 SSL TLV":                          {"ssl.version": "TLSv1.3", "ssl.cn": "client.example", "ssl.cipher": "TLS_AES_128_GCM_SHA256", "ssl.verified": "true"},
		"v2 Azure Private Link TLV":           {"azure_link_id": "123456"},
		"v2 GCP PSC TLV":                      {"gcp_psc_id": "987654321"},
		"v2 NETNS TLV":                        {"netns": "blue"},
		"v2 LOCAL":                            {"command": "LOCAL", "client_ip": "127.0.0.1", "source": "peer", "src_ip": ""},
		"v1 TCP6":                             {"version": "1", "src_ip": "2001:db8::9", "dst_ip": "2001:db8::1", "client_ip": "2001:db8::9"},
		"v1 UNKNOWN":                          {"version": "1", "client_ip": "127.0.0.1", "source": "peer"},
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			o := exchange(t, "tcp", "127.0.0.1", addr, byName[name].Data, 5*time.Second)
			got := fields(o.body)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (body %s)", k, got[k], v, o.body)
				}
			}
		})
	}
}

// TestPolicyMatrix runs {trusted, untrusted} x {valid header, no header,
// malformed header} against every missing_header x untrusted setting.
func TestPolicyMatrix(t *testing.T) {
	c := startCaddy(t)
	type server struct{ missing, untrusted, addr string }
	var servers []server
	var js []string
	ports := freePorts(t, 6)
	for _, m := range []string{"reject", "allow"} {
		for _, u := range []string{"ignore", "reject", "skip"} {
			s := server{m, u, fmt.Sprintf("127.0.0.1:%d", ports[len(servers)])}
			servers = append(servers, s)
			js = append(js, fmt.Sprintf("%q:%s", m+"-"+u, ppServer(s.addr, fmt.Sprintf(`,"missing_header":%q,"untrusted":%q`, m, u))))
		}
	}
	c.loadJSON(`{"http":{"servers":{` + strings.Join(js, ",") + `}}}`)
	inputs := map[string][]byte{
		"valid":     []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n"),
		"none":      nil,
		"malformed": []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555\r\n"),
	}
	want := func(s server, trusted bool, input string) string {
		switch {
		case trusted && input == "valid":
			return "203.0.113.9:5555"
		case trusted && input == "none" && s.missing == "allow":
			return "peer"
		case trusted:
			return "close"
		case s.untrusted == "reject":
			return "close"
		case s.untrusted == "skip" && input != "none":
			return "status 400" // its bytes are plain HTTP, and a PROXY line is not
		case s.untrusted == "ignore" && input == "malformed":
			return "close"
		}
		return "peer"
	}
	var table []string
	for _, s := range servers {
		for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
			for _, input := range []string{"valid", "none", "malformed"} {
				trusted := src == "127.0.0.1"
				got := exchange(t, "tcp", src, s.addr, inputs[input], 5*time.Second).String()
				w := want(s, trusted, input)
				who := map[bool]string{true: "trusted", false: "untrusted"}[trusted]
				table = append(table, fmt.Sprintf("missing_header %-6s untrusted %-6s | %-9s %-9s -> %s", s.missing, s.untrusted, who, input, got))
				if got != w {
					t.Errorf("missing_header %s, untrusted %s, %s sender, %s header: got %s, want %s", s.missing, s.untrusted, who, input, got, w)
				}
			}
		}
	}
	t.Logf("policy matrix:\n%s", strings.Join(table, "\n"))
}

// TestSilentSendersDelayNobody opens 200 connections that send nothing; a
// new client is served while every one of them is still open, and they are
// all closed once the header timeout passes.
func TestSilentSendersDelayNobody(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"pp":{"listen":[%q],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"],"timeout":"3s"}],
		"routes":[{"handle":[{"handler":"static_response","body":%q}]}]}}}}`, addr, ppBody))
	silent := make([]net.Conn, 0, 200)
	defer func() {
		for _, s := range silent {
			s.Close()
		}
	}()
	for i := 0; i < 200; i++ {
		s, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, s)
	}
	// Some send half a header and stall (slowloris on the header itself).
	for _, s := range silent[:50] {
		_, _ = s.Write([]byte("PROXY TCP4 203.0"))
	}
	opened := time.Now()
	got := exchange(t, "tcp", "127.0.0.1", addr, []byte("PROXY TCP4 198.51.100.7 10.0.0.1 7777 443\r\n"), 10*time.Second).String()
	if got != "198.51.100.7:7777" {
		t.Fatalf("new client: %s", got)
	}
	servedAfter := time.Since(opened)
	// None of the silent ones has been closed yet: the new client did not
	// wait for their timeout.
	for i, s := range silent {
		_ = s.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := s.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("silent connection %d already closed (%v) when the new client was served after %s", i, err, servedAfter)
		}
	}
	// All of them are closed after the 3s timeout, without a response.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for i, s := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.SetReadDeadline(time.Now().Add(15 * time.Second))
			n, err := io.ReadFull(s, make([]byte, 1))
			if n != 0 || isTimeout(err) {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%d: %d bytes, %v", i, n, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d silent connections not closed without a response: %v", len(bad), bad[:min(5, len(bad))])
	}
	t.Logf("new client served %s after 200 silent connections opened", servedAfter)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// proxyDialer dials addr and writes header before anything else.
func proxyDialer(addr string, header []byte) func(ctx context.Context, network, _ string) (net.Conn, error) {
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(header); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}

// TestProxyThenTLS follows the README: the wrapper in front of tls on an
// HTTPS site with Caddy's internal CA; an AWS NLB-shaped v2 header gives
// the client address and the VPC endpoint ID, over HTTP/1.1 and h2.
func TestProxyThenTLS(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`{
	auto_https disable_redirects
	servers 127.0.0.1:%[1]d {
		listener_wrappers {
			real_ip 127.0.0.1
			tls
		}
	}
}
https://localhost:%[1]d {
	bind 127.0.0.1
	tls internal
	real_ip 127.0.0.1 {
		real_ip_header proxy_protocol
	}
	respond "client={client_ip} vpce={http.real_ip.proxy_protocol.aws_vpce_id} proto={http.request.proto}"
}`, port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{
			DialContext:       proxyDialer(addr, awsHeader(t)),
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"},
			ForceAttemptHTTP2: h2,
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		_, b := getWhileIssuing(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, newGet(fmt.Sprintf("https://localhost:%d/", port)))
		f := fields(string(b))
		wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		if f["client"] != "203.0.113.9" || f["vpce"] != "vpce-0123456789abcdef0" || f["proto"] != wantProto {
			t.Errorf("h2=%v: %s", h2, b)
		}
		tr.CloseIdleConnections()
	}
}

func TestProxyThenH2C(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"pp":{"listen":[%q],"protocols":["h1","h2c"],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
		"routes":[{"handle":[{"handler":"static_response","body":"client={http.request.remote.host} proto={http.request.proto}"}]}]}}}}`, addr))
	tr := &http.Transport{DialContext: proxyDialer(addr, awsHeader(t)), Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if f := fields(string(b)); f["client"] != "203.0.113.9" || f["proto"] != "HTTP/2.0" {
		t.Errorf("h2c: %s", b)
	}
}

func TestProxyOnUnixListener(t *testing.T) {
	c := startCaddy(t)
	sock := filepath.Join(c.dir, "pp.sock")
	c.loadJSON(`{"http":{"servers":{"pp":` + ppServer("unix/"+sock, "") + `}}}`)
	if got := exchange(t, "unix", "", sock, []byte("PROXY TCP6 2001:db8::77 2001:db8::1 4321 443\r\n"), 5*time.Second).String(); got != "[2001:db8::77]:4321" {
		t.Errorf("v1 over unix: %s", got)
	}
	if got := exchange(t, "unix", "", sock, awsHeader(t), 5*time.Second).String(); got != "203.0.113.9:5555" {
		t.Errorf("v2 over unix: %s", got)
	}
	if got := exchange(t, "unix", "", sock, nil, 5*time.Second).String(); got != "close" {
		t.Errorf("no header over unix (missing_header reject): %s", got)
	}
}

func TestListenerWrapperConfigErrors(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	cases := map[string]string{
		// listed after tls
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"http_redirect"},{"wrapper":"tls"},{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"]}],
			"routes":[{"handle":[{"handler":"static_response","body":"x"}]}]}}}}`, port): "real_ip listener wrapper is listed after tls",
		// HTTPS server, tls left out
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"]}],
			"routes":[{"match":[{"host":["localhost"]}],"handle":[{"handler":"static_response","body":"x"}]}],
			"tls_connection_policies":[{}]}}},"tls":{"automation":{"policies":[{"issuers":[{"module":"internal"}]}]}}}`, port): "serves HTTPS without tls in listener_wrappers",
		// proxy_protocol without the wrapper
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
			"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_header":"proxy_protocol"}]}]}}}}`, port): "real_ip_header proxy_protocol needs the real_ip listener wrapper",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip"}]}}}}`, port):                                                      "trusted_ips is required",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"],"missing_header":"drop"}]}}}}`, port): "missing_header must be reject or allow, got 'drop'",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"],"untrusted":"deny"}]}}}}`, port):      "untrusted must be ignore, reject or skip, got 'deny'",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/80"]}]}}}}`, port):                        "got '10.0.0.0/80'",
	}
	for cfg, want := range cases {
		c.refuseJSON(cfg, want)
	}
}

// TestProxyProtocolForwardedHeadersFromTheClient: in proxy_protocol mode the
// HTTP headers come from the PROXY source, so reverse_proxy keeps incoming
// X-Forwarded-* only when that source is trusted, not whenever the L4
// balancer is (Kong keeps them whenever the balancer is trusted).
func TestProxyProtocolForwardedHeadersFromTheClient(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":[%q],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
		"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8"],"real_ip_header":"proxy_protocol"},
			{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}]}]}}}}`, addr, up))
	in := []string{"X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: https"}
	for _, tc := range []struct {
		header, xff, proto string
	}{
		{"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n", "203.0.113.9", "http"},     // a client: nothing kept
		{"PROXY TCP4 10.0.0.7 10.0.0.1 5555 443\r\n", "6.6.6.6, 10.0.0.7", "https"}, // a trusted L7 proxy: kept
	} {
		o := exchangeWithHeaders(t, addr, []byte(tc.header), in)
		var h http.Header
		if err := json.Unmarshal([]byte(o.body), &h); err != nil {
			t.Fatalf("%v: %s", err, o.body)
		}
		if h.Get("X-Forwarded-For") != tc.xff || h.Get("X-Forwarded-Proto") != tc.proto {
			t.Errorf("%q: upstream got X-Forwarded-For %q, X-Forwarded-Proto %q; want %q, %q",
				tc.header, h.Get("X-Forwarded-For"), h.Get("X-Forwarded-Proto"), tc.xff, tc.proto)
		}
	}
}
