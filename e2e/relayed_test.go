package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRelayedUnknownClientIsNotBelieved: a trusted balancer's PROXY header
// with command PROXY and no client address (v1 UNKNOWN, v2 AF_UNIX, v2
// UDP) relays a client that cannot be named, so the forwarding headers on
// that connection are the client's and reach no decision and no upstream
// as trusted. HAProxy relaying clients of a UNIX socket with send-proxy
// sends exactly that (PROXY UNKNOWN). v2 LOCAL keeps the balancer trusted.
func TestRelayedUnknownClientIsNotBelieved(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 2)
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"xff":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
			"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
				{"handler":"headers","request":{"set":{"X-Seen":["{http.vars.client_ip} {http.real_ip.source} {http.real_ip.trusted}"]}}},
				{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}]}]},
		"pp":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
			"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.0/8"],"real_ip_header":"proxy_protocol"},
				{"handler":"headers","request":{"set":{"X-Seen":["{http.vars.client_ip} {http.real_ip.source} {http.real_ip.trusted}"]}}},
				{"handler":"reverse_proxy","upstreams":[{"dial":%q}]}]}]}}}}`, ports[0], up, ports[1], up))
	xff, pp := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	forged := []string{"X-Forwarded-For: 192.0.2.66", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"}
	sig := "0d0a0d0a000d0a515549540a"
	v2 := func(cmdFam, body string) string {
		b, _ := hex.DecodeString(sig + cmdFam + fmt.Sprintf("%04x", len(body)/2) + body)
		return string(b)
	}
	unixPaths := hex.EncodeToString(append([]byte("/run/client.sock"), make([]byte, 216-16)...))
	relayed := map[string]string{
		"v1 UNKNOWN":                "PROXY UNKNOWN\r\n",
		"v1 UNKNOWN with addresses": "PROXY UNKNOWN 203.0.113.9 10.0.0.1 5555 80\r\n",
		"v2 AF_UNIX":                v2("2131", unixPaths),
		"v2 UDP IPv4":               v2("2112", "cb00710a0a000001d4310050"),
	}
	check := func(name, addr string, h map[string][]string, wantSeen string) {
		t.Helper()
		if got := strings.Join(h["X-Seen"], ","); got != wantSeen {
			t.Errorf("%s on %s: the handler saw %q, want %q", name, addr, got, wantSeen)
		}
		if got := strings.Join(h["X-Forwarded-For"], ","); got != "127.0.0.1" {
			t.Errorf("%s on %s: upstream X-Forwarded-For %q, want only the balancer", name, addr, got)
		}
		if got := strings.Join(h["X-Forwarded-Proto"], ","); got != "http" {
			t.Errorf("%s on %s: upstream X-Forwarded-Proto %q: the client's was believed", name, addr, got)
		}
		if got := strings.Join(h["X-Forwarded-Host"], ","); got == "evil.example" {
			t.Errorf("%s on %s: upstream X-Forwarded-Host %q: the client's was believed", name, addr, got)
		}
	}
	for name, header := range relayed {
		check(name, xff, upstreamHeaders(t, xff, header, forged...), "127.0.0.1 peer false")
		check(name, pp, upstreamHeaders(t, pp, header, forged...), "127.0.0.1 peer true")
	}

	// LOCAL: the balancer's own connection, trusted as it is.
	local := v2("2011", "cb00710a0a000001d4310050")
	h := upstreamHeaders(t, xff, local, forged...)
	if got := strings.Join(h["X-Seen"], ","); got != "192.0.2.66 header true" {
		t.Errorf("LOCAL: the handler saw %q", got)
	}
	if got := strings.Join(h["X-Forwarded-Proto"], ","); got != "https" {
		t.Errorf("LOCAL: upstream X-Forwarded-Proto %q, want the trusted balancer's", got)
	}

	// HAProxy relaying the clients of a UNIX socket with send-proxy.
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is needed here (apt-get install -y haproxy)")
		}
		t.Logf("haproxy not installed: its part is not run")
		return
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "relay.sock")
	cfg := fmt.Sprintf(`defaults
	mode tcp
	timeout connect 2s
	timeout client 5s
	timeout server 5s
frontend relay
	bind unix@%s
	default_backend caddy
backend caddy
	server caddy %s send-proxy
`, sock, xff)
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", filepath.Join(dir, "haproxy.cfg"))
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not listen: %v\n%s", err, out.String())
		}
	}
	o := roundTrip(t, conn, request(forged), 5*time.Second)
	if o.status != 200 {
		t.Fatalf("through haproxy: %+v\n%s", o, out.String())
	}
	var got map[string][]string
	if err := json.Unmarshal([]byte(o.body), &got); err != nil {
		t.Fatalf("%v: %s", err, o.body)
	}
	check("HAProxy send-proxy from a UNIX socket", xff, got, "127.0.0.1 peer false")
}

// TestImportRefusesCraftedInput runs the built binary's importers on the
// inputs that made them print a config with the admin API on every
// interface, or an extra site: both refuse, naming the key, and print
// nothing.
func TestImportRefusesCraftedInput(t *testing.T) {
	dir := t.TempDir()
	cm := filepath.Join(dir, "cm.yaml")
	crafted := "kind: ConfigMap\nmetadata:\n  name: \"x)\\n{\\n\\tadmin 0.0.0.0:2019\\n}\\n#\"\ndata:\n  use-forwarded-headers: \"true\"\n"
	if err := os.WriteFile(cm, []byte(crafted), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"ingress-nginx, crafted metadata.name", nil, []string{"real-ip", "import", "ingress-nginx", "--configmap", cm}, "metadata.name has the control character U+000A"},
		{"kong, KONG_REAL_IP_RECURSIVE with a newline", []string{"KONG_TRUSTED_IPS=10.0.0.0/8", "KONG_REAL_IP_RECURSIVE=on\n}\nhttp://:2019 {\n\trespond owned\n}\n#"},
			[]string{"real-ip", "import", "kong"}, "real_ip_recursive has the control character U+000A"},
	}
	for _, c := range cases {
		cmd := exec.Command(caddyBin, c.args...)
		cmd.Env = append(os.Environ(), c.env...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err == nil || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: %v, stderr %q, want %q", c.name, err, stderr.String(), c.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("%s: printed a config:\n%s", c.name, stdout.String())
		}
	}
}
