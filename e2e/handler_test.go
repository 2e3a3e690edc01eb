package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// echoPlaceholders is a respond body that shows what handlers see. JSON
// configs have no Caddyfile shorthands, so it uses the full names.
const echoPlaceholders = `client_ip={http.vars.client_ip} remote_host={http.request.remote.host} remote_port={http.request.remote.port} rip_client={http.real_ip.client_ip}:{http.real_ip.client_port} peer={http.real_ip.peer_ip} trusted={http.real_ip.trusted} source={http.real_ip.source}`

// fields splits "k=v k=v" bodies.
func fields(body string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(body) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func TestHandlerFromSeveralSources(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	real_ip {
		trusted_ips 127.0.0.1 127.0.0.3
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	respond "%s"
}`, port, echoPlaceholders))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	cases := []struct {
		src     string
		headers []string
		client  string
		port    string // "" means the connection's own port
		trusted string
		source  string
	}{
		{"127.0.0.1", []string{"X-Forwarded-For: 203.0.113.7"}, "203.0.113.7", "0", "true", "header"},
		{"127.0.0.2", []string{"X-Forwarded-For: 203.0.113.7"}, "127.0.0.2", "", "false", "peer"},
		{"127.0.0.3", []string{"X-Forwarded-For: 203.0.113.7:4444, 127.0.0.1"}, "203.0.113.7", "4444", "true", "header"},
		{"127.0.0.1", []string{"X-Forwarded-For: 198.51.100.9, 127.0.0.2, 127.0.0.3"}, "127.0.0.2", "0", "true", "header"},
		{"127.0.0.1", []string{"X-Forwarded-For: 198.51.100.9", "x-forwarded-for: 127.0.0.3"}, "198.51.100.9", "0", "true", "header"},
		{"127.0.0.1", []string{"X-Forwarded-For: unknown"}, "127.0.0.1", "", "true", "peer"},
		{"127.0.0.1", nil, "127.0.0.1", "", "true", "peer"},
		{"127.0.0.1", []string{"X-Forwarded-For: [2001:db8::7]:8443"}, "2001:db8::7", "8443", "true", "header"},
	}
	for _, tc := range cases {
		t.Run(tc.src+" "+strings.Join(tc.headers, "|"), func(t *testing.T) {
			body, local := getFrom(t, tc.src, addr, tc.headers)
			f := fields(body)
			wantPort := tc.port
			if wantPort == "" {
				wantPort = fmt.Sprint(local)
			}
			if f["client_ip"] != tc.client || f["remote_host"] != tc.client || f["remote_port"] != wantPort {
				t.Errorf("got %s; want client %s port %s", body, tc.client, wantPort)
			}
			if f["rip_client"] != tc.client+":"+wantPort {
				t.Errorf("http.real_ip.client_*: %s", f["rip_client"])
			}
			if f["peer"] != tc.src || f["trusted"] != tc.trusted || f["source"] != tc.source {
				t.Errorf("peer/trusted/source: %s", body)
			}
		})
	}
}

func TestHandlerDefaultHeaderAndCustom(t *testing.T) {
	c := startCaddy(t)
	p1, p2 := freePort(t), freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.1
	respond "%s"
}
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.0/8 {
		real_ip_header cf-connecting-ip
	}
	respond "%s"
}`, p1, echoPlaceholders, p2, echoPlaceholders))
	body, _ := getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", p1), []string{"X-Real-IP: 192.0.2.44", "X-Forwarded-For: 192.0.2.55"})
	if f := fields(body); f["client_ip"] != "192.0.2.44" {
		t.Errorf("X-Real-IP default: %s", body)
	}
	body, _ = getFrom(t, "127.0.0.9", fmt.Sprintf("127.0.0.1:%d", p2), []string{"CF-Connecting-IP: 2001:db8::44"})
	if f := fields(body); f["client_ip"] != "2001:db8::44" || f["remote_host"] != "2001:db8::44" {
		t.Errorf("custom header: %s", body)
	}
}

func TestHandlerUnixSocket(t *testing.T) {
	c := startCaddy(t)
	sock := filepath.Join(c.dir, "caddy.sock")
	sock2 := filepath.Join(c.dir, "caddy2.sock")
	route := func(trusted string) string {
		return fmt.Sprintf(`[{"handle":[
			{"handler":"real_ip","trusted_ips":[%q],"real_ip_header":"X-Forwarded-For"},
			{"handler":"static_response","body":%q}]}]`, trusted, echoPlaceholders)
	}
	// "not" trusts TCP peers only; it listens on TCP too, because a list
	// that can never trust a peer of its server is a config error.
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"trusting":{"listen":["unix/%s"],"routes":%s},
		"not":{"listen":["unix/%s","127.0.0.1:%d"],"routes":%s}}}}`, sock, route("unix:"), sock2, freePort(t), route("10.0.0.0/8")))
	f := fields(getUnix(t, sock, []string{"X-Forwarded-For: 198.51.100.23:1234"}))
	if f["client_ip"] != "198.51.100.23" || f["remote_port"] != "1234" || f["trusted"] != "true" || f["source"] != "header" {
		t.Errorf("unix: trusted: %v", f)
	}
	f = fields(getUnix(t, sock2, []string{"X-Forwarded-For: 198.51.100.23"}))
	if f["source"] != "peer" || f["trusted"] != "false" || f["client_ip"] == "198.51.100.23" {
		t.Errorf("unix: untrusted: %v", f)
	}
}

// upstreamEcho is an HTTP server that answers with the request headers it
// got, as JSON.
func upstreamEcho(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestReverseProxyUpstreamHeaders checks what Caddy's own reverse_proxy
// sends after real_ip; Kong's headers (the README's header_up block) are
// checked by TestREADMEKongUpstreamHeaders.
func TestReverseProxyUpstreamHeaders(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	p1 := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
	}
	reverse_proxy %s
}`, p1, up))
	get := func(src string, port int, headers []string) http.Header {
		body, _ := getFrom(t, src, fmt.Sprintf("127.0.0.1:%d", port), headers)
		var h http.Header
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return h
	}
	in := []string{"X-Forwarded-For: 203.0.113.50", "X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example"}

	// Caddy's own reverse_proxy headers, from a trusted peer: the client
	// address is appended, incoming X-Forwarded-Proto/Host are kept.
	h := get("127.0.0.1", p1, in)
	if h.Get("X-Forwarded-For") != "203.0.113.50, 203.0.113.50" || h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "shop.example" {
		t.Errorf("trusted, default headers: %v", h)
	}
	// From an untrusted peer nothing incoming is kept.
	h = get("127.0.0.2", p1, in)
	if h.Get("X-Forwarded-For") != "127.0.0.2" || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "localhost" {
		t.Errorf("untrusted, default headers: %v", h)
	}
}

func TestAdminAPIJSONLoad(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	apps := func(trusted string) string {
		return fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":[%s],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
			{"handler":"static_response","body":%q}]}]}}}}`, port, trusted, echoPlaceholders)
	}
	c.loadJSON(apps(`"127.0.0.1,10.0.0.0/8"`))
	body, _ := getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"X-Forwarded-For: 198.51.100.1, 10.1.2.3"})
	if fields(body)["client_ip"] != "198.51.100.1" {
		t.Errorf("after /load: %s", body)
	}
	// A bad entry is refused with Kong's message; the running config stays.
	c.refuseJSON(apps(`"127.0.0.1","10.0.0.256"`), "got '10.0.0.256'")
	body, _ = getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"X-Forwarded-For: 198.51.100.1, 10.1.2.3"})
	if fields(body)["client_ip"] != "198.51.100.1" {
		t.Errorf("after refused /load: %s", body)
	}
	// Kong's "on" is real_ip_recursive's true.
	c.loadJSON(strings.Replace(apps(`"127.0.0.1,10.0.0.0/8"`), `"real_ip_recursive":true`, `"real_ip_recursive":"on"`, 1))
	body, _ = getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"X-Forwarded-For: 198.51.100.2, 10.1.2.3"})
	if fields(body)["client_ip"] != "198.51.100.2" {
		t.Errorf(`after /load with "on": %s`, body)
	}
	// A misspelt proxy_protocol is refused, not taken as a header name that
	// a trusted sender could fill in.
	nearMiss := strings.Replace(apps(`"127.0.0.1"`), `"real_ip_header":"X-Forwarded-For"`, `"real_ip_header":"proxy-protocol"`, 1)
	c.refuseJSON(nearMiss, "looks like a misspelling of proxy_protocol; write proxy_protocol")
	body, _ = getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"Proxy-Protocol: 192.0.2.66"})
	if fields(body)["client_ip"] != "127.0.0.1" {
		t.Errorf("a Proxy-Protocol header chose the client: %s", body)
	}
	// A Caddyfile error names the line.
	code, msg := c.post("{\n\tadmin "+c.admin+"\n}\n:9999 {\n\treal_ip 10.0.0.1 {\n\t\treal_ip_recursive maybe\n\t}\n}\n", "text/caddyfile")
	if code == 200 || !strings.Contains(msg, "real_ip_recursive takes on or off, got 'maybe'") || !strings.Contains(msg, ":6") {
		t.Errorf("Caddyfile error: %d %s", code, msg)
	}
}

func TestAccessLogShowsClient(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	logFile := filepath.Join(c.dir, "access.log")
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	log {
		output file %s
		format json
	}
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
	}
	respond "ok"
}`, port, logFile))
	getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"X-Forwarded-For: 192.0.2.200"})
	var line []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		line, _ = os.ReadFile(logFile)
		if len(line) > 0 {
			break
		}
	}
	var entry struct {
		Request struct {
			RemoteIP string `json:"remote_ip"`
			ClientIP string `json:"client_ip"`
		} `json:"request"`
	}
	if err := json.Unmarshal(line, &entry); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	// Caddy's access log keeps the connection's peer in remote_ip and puts
	// the client in client_ip.
	if entry.Request.ClientIP != "192.0.2.200" || entry.Request.RemoteIP != "127.0.0.1" {
		t.Errorf("access log: %s", line)
	}
}

// TestMatchersSeeTheClient: remote_ip and client_ip matchers on later
// routes match the client found by real_ip, with no order line, and the
// Caddyfile shorthands {client_ip} and {remote_host} show it.
func TestMatchersSeeTheClient(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	@office remote_ip 203.0.113.0/24
	@clients client_ip 198.51.100.0/24
	respond @office "office {client_ip} {remote_host}"
	respond @clients "clients {client_ip} {remote_host}"
	respond "other {client_ip} {remote_host}"
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
	}
}`, port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for xff, want := range map[string]string{
		"203.0.113.5":  "office 203.0.113.5 203.0.113.5",
		"198.51.100.8": "clients 198.51.100.8 198.51.100.8",
		"192.0.2.1":    "other 192.0.2.1 192.0.2.1",
	} {
		if body, _ := getFrom(t, "127.0.0.1", addr, []string{"X-Forwarded-For: " + xff}); body != want {
			t.Errorf("%s: %q, want %q", xff, body, want)
		}
	}
	if body, _ := getFrom(t, "127.0.0.2", addr, []string{"X-Forwarded-For: 203.0.113.5"}); body != "other 127.0.0.2 127.0.0.2" {
		t.Errorf("untrusted: %q", body)
	}
}

// rewrite_forwarded_headers with the README's reverse_proxy block: the
// upstream gets the trusted chain and the client, never the forged entry;
// from an untrusted peer, none of what it wrote.
func TestRewriteForwardedHeadersUpstream(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
		rewrite_forwarded_headers
	}
	reverse_proxy %s {
		header_up X-Forwarded-For {http.request.header.X-Forwarded-For}
	}
}`, port, up))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	get := func(src string, headers ...string) http.Header {
		body, _ := getFrom(t, src, addr, headers)
		var h http.Header
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return h
	}
	h := get("127.0.0.1", "X-Forwarded-For: 192.0.2.66, 203.0.113.7", "X-Real-IP: 192.0.2.66")
	if h.Get("X-Forwarded-For") != "203.0.113.7, 127.0.0.1" || h.Get("X-Real-Ip") != "203.0.113.7" {
		t.Errorf("trusted peer: upstream got %v", h)
	}
	h = get("127.0.0.2", "X-Forwarded-For: 192.0.2.66", "X-Real-IP: 192.0.2.66", "X-Forwarded-Host: evil.example")
	if h.Get("X-Real-Ip") != "" || h.Get("X-Forwarded-Host") == "evil.example" || strings.Contains(h.Get("X-Forwarded-For"), "192.0.2.66") {
		t.Errorf("untrusted peer: upstream got %v", h)
	}
}
