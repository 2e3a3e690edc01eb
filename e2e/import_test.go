package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// caddyCommand runs the built binary with args and extra environment
// variables, and returns its standard output.
func caddyCommand(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// upstreamHeaders sends prefix (PROXY headers) and a request to addr from
// 127.0.0.1 and decodes what the echo upstream received.
func upstreamHeaders(t *testing.T, addr, prefix string, headers ...string) http.Header {
	t.Helper()
	o := exchangeWithHeaders(t, addr, []byte(prefix), headers)
	if o.closed || o.status != 200 {
		t.Fatalf("%s: %+v", addr, o)
	}
	var h http.Header
	if err := json.Unmarshal([]byte(o.body), &h); err != nil {
		t.Fatalf("%v: %s", err, o.body)
	}
	return h
}

// tlsUpstreamHeaders sends a PROXY header, then TLS and a request.
func tlsUpstreamHeaders(t *testing.T, addr string, header []byte) http.Header {
	t.Helper()
	tr := &http.Transport{DialContext: proxyDialer(addr, header), TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "shop.example"}}
	defer tr.CloseIdleConnections()
	// The internal CA issues the on-demand certificate on first handshake.
	_, body := getWhileIssuing(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, newGet("https://shop.example/"))
	var h http.Header
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return h
}

// TestImportKongRuns follows the issue's own example: Kong behind an L4
// balancer on two ports (one TLS), imported with --upstream, run as is;
// the PROXY source reaches the upstream on both ports. Then the L7 case.
func TestImportKongRuns(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 3)
	cf := caddyCommand(t, []string{
		fmt.Sprintf("KONG_PROXY_LISTEN=127.0.0.1:%d proxy_protocol, 127.0.0.1:%d ssl proxy_protocol", ports[0], ports[1]),
		"KONG_TRUSTED_IPS=0.0.0.0/0,::/0", "KONG_REAL_IP_HEADER=proxy_protocol", "KONG_REAL_IP_RECURSIVE=",
	}, "real-ip", "import", "kong", "--upstream", "http://"+up)
	c.loadCaddyfile(cf)
	h := upstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[0]), "PROXY TCP4 203.0.113.9 10.0.0.1 5555 8000\r\n")
	if h.Get("X-Real-Ip") != "203.0.113.9" || h.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("HTTP port: upstream got %v\n%s", h, cf)
	}
	h = tlsUpstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[1]), awsHeader(t))
	if h.Get("X-Real-Ip") != "203.0.113.9" || h.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("HTTPS port: upstream got %v\n%s", h, cf)
	}

	// The L7 case: X-Forwarded-For, recursive on.
	cf = caddyCommand(t, []string{
		fmt.Sprintf("KONG_PROXY_LISTEN=127.0.0.1:%d", ports[2]),
		"KONG_TRUSTED_IPS=127.0.0.1", "KONG_REAL_IP_HEADER=X-Forwarded-For", "KONG_REAL_IP_RECURSIVE=on",
	}, "real-ip", "import", "kong", "--upstream", "http://"+up)
	c.loadCaddyfile(cf)
	h = upstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[2]), "", "X-Forwarded-For: 198.51.100.7, 127.0.0.1")
	if h.Get("X-Real-Ip") != "198.51.100.7" {
		t.Errorf("X-Forwarded-For: upstream got %v\n%s", h, cf)
	}

	// --json prints what the Caddyfile adapts to.
	js := caddyCommand(t, []string{"KONG_PROXY_LISTEN=127.0.0.1:8000 proxy_protocol", "KONG_TRUSTED_IPS=10.0.0.0/8",
		"KONG_REAL_IP_HEADER=proxy_protocol"}, "real-ip", "import", "kong", "--json")
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					ListenerWrappers []map[string]any `json:"listener_wrappers"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(js), &cfg); err != nil || len(cfg.Apps.HTTP.Servers) != 1 {
		t.Fatalf("--json: %v\n%s", err, js)
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		if len(srv.ListenerWrappers) == 0 || srv.ListenerWrappers[0]["wrapper"] != "real_ip" {
			t.Errorf("--json: no real_ip wrapper: %s", js)
		}
	}

	// A malformed value is refused in Kong's words, naming it.
	cmd := exec.Command(caddyBin, "real-ip", "import", "kong")
	cmd.Env = append(os.Environ(), "KONG_PROXY_LISTEN=0.0.0.0:8000 sslx")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "proxy_listen must be of form") || !strings.Contains(string(out), "'0.0.0.0:8000 sslx'") {
		t.Errorf("malformed proxy_listen: %v %s", err, out)
	}
}

// TestImportIngressNginxRuns imports a ConfigMap with use-proxy-protocol,
// runs the output and checks the PROXY source on both ports; then one with
// use-forwarded-headers.
func TestImportIngressNginxRuns(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 3)
	dir := t.TempDir()
	manifest := filepath.Join(dir, "configmap.yaml")
	write := func(data string) {
		if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ingress-nginx-controller\ndata:\n"+data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("  use-proxy-protocol: \"true\"\n  proxy-real-ip-cidr: \"127.0.0.1/32\"\n")
	cf := caddyCommand(t, nil, "real-ip", "import", "ingress-nginx", "--configmap", manifest,
		"--http-port", fmt.Sprint(ports[0]), "--https-port", fmt.Sprint(ports[1]), "--healthz-port", fmt.Sprint(ports[2]), "--upstream", "http://"+up)
	c.loadCaddyfile(cf)
	h := upstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[0]), "PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n")
	if h.Get("X-Real-Ip") != "203.0.113.9" || h.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("HTTP port: upstream got %v\n%s", h, cf)
	}
	if h := tlsUpstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[1]), awsHeader(t)); h.Get("X-Real-Ip") != "203.0.113.9" {
		t.Errorf("HTTPS port: upstream got %v\n%s", h, cf)
	}

	write("  use-forwarded-headers: \"true\"\n  proxy-real-ip-cidr: \"127.0.0.0/8\"\n")
	cf = caddyCommand(t, nil, "real-ip", "import", "ingress-nginx", "--configmap", manifest,
		"--http-port", fmt.Sprint(ports[0]), "--https-port", fmt.Sprint(ports[1]), "--healthz-port", fmt.Sprint(ports[2]), "--upstream", "http://"+up)
	c.loadCaddyfile(cf)
	h = upstreamHeaders(t, fmt.Sprintf("127.0.0.1:%d", ports[0]), "", "X-Forwarded-For: 198.51.100.7, 127.0.0.9", "X-Forwarded-Proto: https")
	if h.Get("X-Real-Ip") != "198.51.100.7" || h.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("use-forwarded-headers: upstream got %v\n%s", h, cf)
	}
}

// The plugin's commands point at its own documentation, not Caddy's
// command-line page.
func TestCommandHelpPointsAtTheREADME(t *testing.T) {
	for _, args := range [][]string{{"real-ip", "--help"}, {"real-ip", "import", "kong", "--help"}, {"real-ip", "explain", "--help"}} {
		out := caddyCommand(t, nil, args...)
		if !strings.Contains(out, "https://github.com/caddy-realip/realip#readme") || strings.Contains(out, "caddyserver.com/docs/command-line") {
			t.Errorf("caddy %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// check and explain read the running config through the admin API.
func TestCheckAndExplainFromTheRunningConfig(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf("{\n\torder header first\n}\nhttp://localhost:%d {\n\tbind 127.0.0.1\n\treal_ip 10.0.0.0/8 {\n\t\treal_ip_header X-Forwarded-For\n\t}\n\theader X-Seen {remote_host}\n\trespond ok\n}\n", port))
	cmd := exec.Command(caddyBin, "real-ip", "check", "--address", c.admin)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "headers runs before real_ip") {
		t.Errorf("check --address: %v\n%s", err, out)
	}
	ex := caddyCommand(t, nil, "real-ip", "explain", "--address", c.admin, "--host", "localhost", "--peer", "10.0.0.5:4000", "--value", "203.0.113.7")
	if !strings.Contains(ex, "the config running at") || !strings.Contains(ex, "client: 203.0.113.7:0 (source header)") {
		t.Errorf("explain --address:\n%s", ex)
	}
}
