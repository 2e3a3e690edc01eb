package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realip/realip/internal/ppvectors"
)

// readmeBlock returns the fenced block of the README or of a docs/ page
// whose first line is the comment marker, so a test runs what the
// documentation shows.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	pages, _ := filepath.Glob("../docs/*.md")
	for _, page := range append([]string{"../README.md"}, pages...) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range strings.Split(string(data), "```")[1:] {
			_, body, ok := strings.Cut(block, "\n")
			if ok && strings.HasPrefix(body, marker+"\n") {
				return body
			}
		}
	}
	t.Fatalf("no block of the README or docs/ starts with %q", marker)
	return ""
}

// TestREADMEEKSCaddyfile runs the README's complete EKS Caddyfile, with its
// ports moved to free ones and the VPC CIDR to this machine's loopback
// address (the test plays the NLB from 127.0.0.1): HTTPS and HTTP behind
// the "NLB" restore the client, the NLB's LOCAL health check is served
// with the balancer's address, and a kubelet probe without a header gets
// its 200 on the probe port. The unkeyed servers block the README warns
// against is run too, to show the empty reply the probe would get.
func TestREADMEEKSCaddyfile(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 3)
	https, http80, probe := ports[0], ports[1], ports[2]
	cfg := readmeBlock(t, "# EKS: NLB with PROXY protocol v2 in front of Caddy")
	cfg = regexp.MustCompile(`:(443|80|8081)\b`).ReplaceAllStringFunc(cfg, func(p string) string {
		return fmt.Sprintf(":%d", map[string]int{":443": https, ":80": http80, ":8081": probe}[p])
	})
	cfg = strings.ReplaceAll(cfg, "10.0.0.0/16", "127.0.0.1")
	cfg = strings.ReplaceAll(cfg, "app:8080", up)
	// Caddy's internal CA instead of ACME, and the site ports moved.
	cfg = strings.Replace(cfg, "{\n", fmt.Sprintf("{\n\tlocal_certs\n\thttps_port %d\n\thttp_port %d\n", https, http80), 1)
	c.loadCaddyfile(cfg)

	byName := map[string][]byte{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v.Data
	}

	// HTTPS behind the NLB: PROXY v2 (with the VPC endpoint TLV), then TLS.
	tr := &http.Transport{
		DialContext:     proxyDialer(fmt.Sprintf("127.0.0.1:%d", https), byName[ppvectors.AWSNLB]),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "app.example.com"},
	}
	defer tr.CloseIdleConnections()
	_, body := getWhileIssuing(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, newGet("https://app.example.com/"))
	var upstream http.Header
	if err := json.Unmarshal(body, &upstream); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got := upstream.Get("X-Forwarded-For"); got != "203.0.113.9" {
		t.Errorf("HTTPS: upstream X-Forwarded-For %q, want the PROXY source 203.0.113.9", got)
	}

	// HTTP behind the NLB: PROXY v1, redirected to HTTPS.
	conn, err := dialFrom("127.0.0.1")(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", http80))
	if err != nil {
		t.Fatal(err)
	}
	redirect := roundTrip(t, conn, []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET /cart HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"), 5*time.Second)
	if redirect.status != 308 {
		t.Errorf("HTTP through the NLB: %+v, want a 308 redirect", redirect)
	}

	// The NLB's HTTP health check: PROXY v2 LOCAL, Host is the pod's IP.
	conn, err = dialFrom("127.0.0.1")(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", http80))
	if err != nil {
		t.Fatal(err)
	}
	check := roundTrip(t, conn, append(append([]byte(nil), byName["v2 LOCAL"]...), "GET /healthz HTTP/1.1\r\nHost: 10.0.3.7\r\nConnection: close\r\n\r\n"...), 5*time.Second)
	if check.closed || check.status != 200 {
		t.Errorf("NLB health check (PROXY v2 LOCAL): %+v, want 200", check)
	}

	// A kubelet probe: no PROXY header, on the probe port.
	conn, err = dialFrom("127.0.0.1")(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", probe))
	if err != nil {
		t.Fatal(err)
	}
	kubelet := roundTrip(t, conn, []byte("GET /healthz HTTP/1.1\r\nHost: 10.0.3.7:8081\r\nConnection: close\r\n\r\n"), 5*time.Second)
	if kubelet.closed || kubelet.status != 200 {
		t.Errorf("kubelet probe: %+v, want 200", kubelet)
	}

	// The trap the README warns about: an unkeyed servers block puts the
	// wrapper on the probe port too, and the probe gets an empty reply.
	sites := cfg[strings.Index(cfg, "\n}\n")+3:]
	unkeyed := fmt.Sprintf("{\n\tlocal_certs\n\thttps_port %d\n\thttp_port %d\n\tservers {\n\t\tlistener_wrappers {\n\t\t\treal_ip 127.0.0.1\n\t\t\ttls\n\t\t}\n\t\tprotocols h1 h2\n\t}\n}\n%s", https, http80, sites)
	c.loadCaddyfile(unkeyed)
	conn, err = dialFrom("127.0.0.1")(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", probe))
	if err != nil {
		t.Fatal(err)
	}
	if o := roundTrip(t, conn, []byte("GET /healthz HTTP/1.1\r\nHost: 10.0.3.7:8081\r\nConnection: close\r\n\r\n"), 10*time.Second); !o.closed {
		t.Errorf("with an unkeyed servers block the probe got %+v; the README says it gets an empty reply", o)
	}
}

// TestREADMEKongUpstreamHeaders loads the README's block for Kong's upstream
// headers as written and checks what reaches the upstream, from a trusted
// and from an untrusted peer, X-Forwarded-Prefix included (Kong sends it
// only from trusted peers, and never empty).
func TestREADMEKongUpstreamHeaders(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	port := freePort(t)
	block := strings.ReplaceAll(readmeBlock(t, "# Kong's upstream headers"), "app:8080", up)
	c.loadCaddyfile(fmt.Sprintf("http://localhost:%d {\n\tbind 127.0.0.1\n\treal_ip 127.0.0.1 {\n\t\treal_ip_header X-Forwarded-For\n\t}\n%s}\n", port, block))
	in := []string{"X-Forwarded-For: 203.0.113.50", "X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example",
		"X-Forwarded-Port: 8443", "X-Forwarded-Path: /shop/cart", "X-Forwarded-Prefix: /shop"}
	get := func(src string) http.Header {
		body, _ := getFrom(t, src, fmt.Sprintf("127.0.0.1:%d", port), in)
		var h http.Header
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return h
	}
	check := func(who string, h http.Header, want map[string]string) {
		for k, v := range want {
			vals, present := h[k]
			switch {
			case v == "" && present:
				t.Errorf("%s: %s sent as %q; Kong leaves it out", who, k, vals)
			case v != "" && (len(vals) != 1 || vals[0] != v):
				t.Errorf("%s: %s = %q, want %q", who, k, vals, v)
			}
		}
	}
	check("trusted peer", get("127.0.0.1"), map[string]string{
		"X-Real-Ip": "203.0.113.50", "X-Forwarded-For": "203.0.113.50, 127.0.0.1",
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example", "X-Forwarded-Port": "8443",
		"X-Forwarded-Path": "/shop/cart", "X-Forwarded-Prefix": "/shop",
	})
	check("untrusted peer", get("127.0.0.2"), map[string]string{
		"X-Real-Ip": "127.0.0.2", "X-Forwarded-For": "203.0.113.50, 127.0.0.2",
		"X-Forwarded-Proto": "http", "X-Forwarded-Host": "localhost", "X-Forwarded-Port": fmt.Sprint(port),
		"X-Forwarded-Path": "/", "X-Forwarded-Prefix": "",
	})
}

// TestREADMEConnPlaceholders pins down what the README's placeholder table
// says: conn_ip and conn_port are the physical sender on every connection
// through the wrapper, header or not; the other proxy_protocol placeholders
// are empty without a header; without the wrapper all of them are empty.
func TestREADMEConnPlaceholders(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 2)
	wrapped, plain := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	body := "conn_ip={http.real_ip.proxy_protocol.conn_ip} conn_port={http.real_ip.proxy_protocol.conn_port} " +
		"version={http.real_ip.proxy_protocol.version} src_ip={http.real_ip.proxy_protocol.src_ip} client={http.real_ip.client_ip}"
	route := fmt.Sprintf(`"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.1"],"real_ip_header":"X-Forwarded-For"},
		{"handler":"static_response","body":%q}]}]`, body)
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"wrapped":{"listen":[%q],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"],"missing_header":"allow"}],%s},
		"plain":{"listen":[%q],%s}}}}`, wrapped, route, plain, route))

	for _, c := range []struct {
		name, addr string
		header     []byte
		want       map[string]string
	}{
		{"wrapper, PROXY header", wrapped, []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n"),
			map[string]string{"conn_ip": "127.0.0.1", "version": "1", "src_ip": "203.0.113.9", "client": "203.0.113.9"}},
		{"wrapper, no header (missing_header allow)", wrapped, nil,
			map[string]string{"conn_ip": "127.0.0.1", "version": "", "src_ip": "", "client": "127.0.0.1"}},
		{"no wrapper", plain, nil,
			map[string]string{"conn_ip": "", "conn_port": "", "version": "", "src_ip": "", "client": "127.0.0.1"}},
	} {
		o := exchange(t, "tcp", "127.0.0.1", c.addr, c.header, 5*time.Second)
		got := fields(o.body)
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (%s)", c.name, k, got[k], v, o.body)
			}
		}
		if c.addr == wrapped {
			if la := o.local.String(); got["conn_port"] == "" || !strings.HasSuffix(la, ":"+got["conn_port"]) {
				t.Errorf("%s: conn_port %q is not the sender's port (%s)", c.name, got["conn_port"], la)
			}
		}
	}
}

// readmeSite loads a README block that is a whole Caddyfile for one ":8080"
// site (see loadSite), with 127.0.0.1 (the test's peer) added to
// 10.0.0.0/8 in trusted_ips. It returns the site's address.
func readmeSite(t *testing.T, c *caddyProc, marker, upstream string) string {
	t.Helper()
	return loadSite(t, c, strings.ReplaceAll(readmeBlock(t, marker), "10.0.0.0/8", "127.0.0.1 10.0.0.0/8"), upstream)
}

// loadSite loads a Caddyfile for one ":8080" site with the port moved to a
// free one and "app:8080" to the upstream, and returns the site's address.
func loadSite(t *testing.T, c *caddyProc, block, upstream string) string {
	t.Helper()
	port := freePort(t)
	block = strings.ReplaceAll(block, "app:8080", upstream)
	block = strings.ReplaceAll(block, ":8080 {", fmt.Sprintf(":%d {", port))
	c.loadCaddyfile(block)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestREADMEBeyondKong runs the README's Forwarded, trusted hops and clean
// chain examples as written.
func TestREADMEBeyondKong(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)

	addr := readmeSite(t, c, "# Forwarded (RFC 7239)", up)
	h := upstreamHeaders(t, addr, "", `Forwarded: for=192.0.2.66, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.1.5`)
	if got := h.Get("X-Forwarded-For"); !strings.HasSuffix(got, "2001:db8:cafe::17") {
		t.Errorf("Forwarded: upstream X-Forwarded-For %q, want the client 2001:db8:cafe::17 last", got)
	}
	h = upstreamHeaders(t, addr, "", `Forwarded: for=192.0.2.66, for=unknown, for=10.0.1.5`)
	if got := h.Get("X-Forwarded-For"); got != "10.0.1.5" {
		t.Errorf("Forwarded with unknown: %q, want 10.0.1.5 (the last good entry)", got)
	}
	body, _ := getFrom(t, "127.0.0.2", addr, []string{`Forwarded: for=192.0.2.66`})
	if !strings.Contains(body, `"X-Forwarded-For":["127.0.0.2"]`) {
		t.Errorf("Forwarded from an untrusted peer: upstream got %s", body)
	}

	addr = readmeSite(t, c, "# Trusted hops", up)
	h = upstreamHeaders(t, addr, "", "X-Forwarded-For: 203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.5")
	if got := h.Get("X-Forwarded-For"); !strings.HasSuffix(got, ", 203.0.113.10") {
		t.Errorf("hops 2: upstream X-Forwarded-For %q, want the client 203.0.113.10 last", got)
	}

	// Cloudflare's ranges from a local server that lists this machine.
	lists := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "v6") {
			fmt.Fprint(w, "2400:cb00::/32\n")
			return
		}
		fmt.Fprint(w, "173.245.48.0/20\n127.0.0.1/32\n")
	}))
	defer lists.Close()
	addr = loadSite(t, c, strings.ReplaceAll(readmeBlock(t, "# Cloudflare's ranges, kept current"), "https://www.cloudflare.com", lists.URL), up)
	if h := upstreamHeaders(t, addr, "", "CF-Connecting-IP: 198.51.100.44"); h.Get("X-Forwarded-For") != "198.51.100.44" {
		t.Errorf("Cloudflare ranges: upstream got %v", h)
	}
	body, _ = getFrom(t, "127.0.0.2", addr, []string{"CF-Connecting-IP: 198.51.100.44"})
	if !strings.Contains(body, `"X-Forwarded-For":["127.0.0.2"]`) {
		t.Errorf("Cloudflare ranges, unlisted peer: upstream got %s", body)
	}

	addr = readmeSite(t, c, "# A clean upstream chain", up)
	h = upstreamHeaders(t, addr, "", "X-Forwarded-For: 192.0.2.66, 203.0.113.7, 10.0.1.5")
	if got := h.Get("X-Forwarded-For"); got != "203.0.113.7, 10.0.1.5, 127.0.0.1" {
		t.Errorf("trusted_chain: upstream X-Forwarded-For %q, want 203.0.113.7, 10.0.1.5, 127.0.0.1", got)
	}
}

// TestREADMELargeList runs the README's long-list example with 100,000
// random ranges (and the test's peer) in the file.
func TestREADMELargeList(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	client := netip.MustParseAddr("203.0.113.7")
	var list strings.Builder
	list.WriteString("# 100,000 random ranges, this test's peer and a proxy range\n127.0.0.1/32\n192.0.2.0/24\n")
	for _, p := range randomRanges(100000, 3, netip.MustParseAddr("127.0.0.2"), client, netip.MustParseAddr("198.51.100.9")) {
		list.WriteString(p.String() + "\n")
	}
	file := filepath.Join(t.TempDir(), "trusted-ranges.txt")
	if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := loadSite(t, c, strings.ReplaceAll(readmeBlock(t, "# A long list of trusted ranges, from a file"), "/etc/caddy/trusted-ranges.txt", file), up)
	// The walk passes the listed proxy 192.0.2.44 and stops at the client;
	// reverse_proxy keeps a trusted peer's X-Forwarded-For and appends the
	// client.
	h := upstreamHeaders(t, addr, "", "X-Forwarded-For: 198.51.100.9, 203.0.113.7, 192.0.2.44")
	if got, want := h.Get("X-Forwarded-For"), "198.51.100.9, 203.0.113.7, 192.0.2.44, 203.0.113.7"; got != want {
		t.Errorf("listed peer: upstream X-Forwarded-For %q, want %q", got, want)
	}
	body, _ := getFrom(t, "127.0.0.2", addr, []string{"X-Forwarded-For: 203.0.113.7"})
	if !strings.Contains(body, `"X-Forwarded-For":["127.0.0.2"]`) {
		t.Errorf("unlisted peer: upstream got %s", body)
	}
}
