package command

import (
	"bytes"
	"context"
	"github.com/caddy-realip/realip/ipsource"
	"github.com/caddyserver/certmagic"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func runExplain(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	c := explainCommand()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetIn(strings.NewReader(stdin))
	c.SetArgs(args)
	err := c.Execute()
	return out.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestExplain(t *testing.T) {
	cases := []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--recursive", "--peer", "10.0.0.5:41000",
			"--value", "203.0.113.7, 10.0.3.1"}, "", "client: 203.0.113.7:0 (source header)"},
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--peer", "10.0.0.5:41000",
			"--value", "203.0.113.7, 10.0.3.1"}, "", "client: 10.0.3.1:0 (source header)"},
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--recursive", "--peer", "192.0.2.9:5000",
			"--value", "203.0.113.7"}, "", "client: 192.0.2.9:5000 (source peer)"},
		{[]string{"--trusted-ips", "10.0.0.0/8,192.168.0.0/16", "--header", "X-Forwarded-For", "--recursive", "--peer", "10.0.0.5:1",
			"--value", "198.51.100.1", "--value", "10.1.1.1, 10.2.2.2:80"}, "", "client: 198.51.100.1:0 (source header)"},
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--recursive", "--peer", "10.0.0.5:1",
			"--value", "unknown, 10.0.0.9"}, "", "client: 10.0.0.9:0 (source header)"},
		{[]string{"--trusted-ips", "unix:", "--header", "X-Real-IP", "--peer", "@"}, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "client: @ (source peer)"},
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "Forwarded", "--recursive", "--peer", "10.0.0.5:1",
			"--value", `for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"`}, "", "client: [2001:db8:cafe::17]:4711 (source header)"},
		{[]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--trusted-hops", "2", "--peer", "10.0.0.5:1",
			"--value", "203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.5"}, "", "client: 203.0.113.10:0 (source header)"},
		// A raw request on standard input: only the first X-Real-IP line counts.
		{[]string{"--trusted-ips", "10.0.0.0/8", "--peer", "10.0.0.5:1"},
			"GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 203.0.113.9:8080\r\nX-Real-IP: 198.51.100.4\r\n\r\n", "client: 203.0.113.9:8080 (source header)"},
	}
	for _, c := range cases {
		out, err := runExplain(t, c.stdin, c.args...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if got := lastLine(out); got != c.want {
			t.Errorf("%v:\n%s\nlast line %q, want %q", c.args, out, got, c.want)
		}
	}
	out, _ := runExplain(t, "", "--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--recursive", "--peer", "10.0.0.5:41000",
		"--value", "203.0.113.7, 10.0.3.1")
	for _, want := range []string{"peer: 10.0.0.5:41000 is in trusted_ips", `line 1: "203.0.113.7, 10.0.3.1"`,
		"10.0.3.1: trusted: a proxy, go on to its left", "203.0.113.7: not trusted: the client"} {
		if !strings.Contains(out, want) {
			t.Errorf("explanation lacks %q:\n%s", want, out)
		}
	}
	if _, err := runExplain(t, "", "--trusted-ips", "10.0.0.0/8", "--header", "proxy-protocol", "--peer", "10.0.0.5:1", "--value", "x"); err == nil ||
		!strings.Contains(err.Error(), "misspelling of proxy_protocol") {
		t.Errorf("near-miss header: %v", err)
	}
	if _, err := runExplain(t, "", "--trusted-ips", "10.0.0.0/8", "--peer", "nowhere", "--value", "x"); err == nil {
		t.Error("a bad peer was accepted")
	}
}

// endless is a request whose header never ends.
type endless struct{ sent bool }

func (e *endless) Read(p []byte) (int, error) {
	if !e.sent {
		e.sent = true
		return copy(p, "GET / HTTP/1.1\r\nHost: a\r\n"), nil
	}
	for i := range p {
		p[i] = "X-Forwarded-For: 192.0.2.1\r\n"[i%28]
	}
	return len(p), nil
}

// Standard input is read up to Caddy's default header size, no further.
func TestExplainStdinIsBounded(t *testing.T) {
	c := explainCommand()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetIn(&endless{})
	c.SetArgs([]string{"--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--peer", "10.0.0.1:1"})
	err := c.Execute()
	if err == nil || !strings.Contains(err.Error(), "larger than 16384 bytes") {
		t.Errorf("an endless header: %v", err)
	}
	// Just under the limit is read.
	req := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + strings.Repeat("a", 15000) + "\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
	got, err := runExplain(t, req, "--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--peer", "10.0.0.1:1")
	if err != nil || lastLine(got) != "client: 192.0.2.1:0 (source header)" {
		t.Errorf("a 15 KB header: %v %q", err, lastLine(got))
	}
}

// explain says why a chain no longer than the trusted hops leaves the peer.
func TestExplainShortChainWithHops(t *testing.T) {
	out, err := runExplain(t, "", "--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--trusted-hops", "2",
		"--peer", "10.0.0.1:1", "--value", "203.0.113.1, 192.0.2.5")
	if err != nil || !strings.Contains(out, "no entry left of the trusted hops") || lastLine(out) != "client: 10.0.0.1:1 (source peer)" {
		t.Errorf("%v\n%s", err, out)
	}
	out, err = runExplain(t, "", "--trusted-ips", "10.0.0.0/8", "--header", "X-Forwarded-For", "--trusted-hops", "2",
		"--peer", "10.0.0.1:1", "--value", "203.0.113.7, unknown, 198.51.100.2")
	if err != nil || !strings.Contains(out, "the entries taken are trusted hops") || lastLine(out) != "client: 10.0.0.1:1 (source peer)" {
		t.Errorf("%v\n%s", err, out)
	}
}

// --config picks the real_ip handler of the route a request meets and
// judges with its settings.
func TestExplainFromConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cf := "a.example {\n\treal_ip 10.0.0.0/8 {\n\t\treal_ip_header X-Forwarded-For\n\t\treal_ip_recursive on\n\t}\n\trespond ok\n}\n" +
		"b.example {\n\troute /api/* {\n\t\treal_ip 192.0.2.0/24 {\n\t\t\treal_ip_header CF-Connecting-IP\n\t\t}\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--host", "a.example", "--peer", "10.0.0.5:4000", "--value", "203.0.113.7, 10.0.0.9"},
			[]string{"handler: server srv0, route 0", "client: 203.0.113.7:0 (source header)"}},
		{[]string{"--host", "b.example", "--path", "/api/x", "--peer", "192.0.2.1:4000", "--value", "198.51.100.4"},
			[]string{"(subroute)", "client: 198.51.100.4:0 (source header)"}},
		{[]string{"--host", "b.example", "--path", "/api/x", "--peer", "10.0.0.5:4000", "--value", "198.51.100.4"},
			[]string{"client: 10.0.0.5:4000 (source peer)"}},
	} {
		out, err := runImport(t, explainCommand(), append([]string{"--config", path}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	if out, err := runImport(t, explainCommand(), "--config", path, "--host", "b.example", "--path", "/other", "--peer", "10.0.0.5:4000", "--value", "x"); err == nil || !strings.Contains(err.Error(), "no real_ip handler runs for host") {
		t.Errorf("no handler on the route: %v\n%s", err, out)
	}
}

// --proxy: the header judged as the wrapper would, then the handler's
// proxy_protocol mode, from the EKS-style example's Caddyfile.
func TestExplainProxyFromConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "Caddyfile")
	cf := "{\n\tservers :443 {\n\t\tlistener_wrappers {\n\t\t\treal_ip 10.0.0.0/16\n\t\t\ttls\n\t\t}\n\t}\n}\n" +
		"app.example.com {\n\treal_ip 10.0.0.0/16 {\n\t\treal_ip_header proxy_protocol\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := "0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "cb007109" + "0a000001" + "15b3" + "01bb" // PROXY TCP4 203.0.113.9:5555 → 10.0.0.1:443
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--proxy", "PROXY TCP4 203.0.113.9 10.0.0.1 5555 443", "--peer", "10.0.3.7:40000"},
			[]string{"wrapper: 10.0.3.7:40000 is in its trusted_ips: PROXY v1 TCP4", "client: 203.0.113.9:5555 (source proxy_protocol)"}},
		{[]string{"--proxy", v2, "--peer", "10.0.3.7:40000"},
			[]string{"PROXY v2 TCP4", "client: 203.0.113.9:5555 (source proxy_protocol)"}},
		{[]string{"--proxy", "PROXY TCP4 203.0.113.9 10.0.0.1 5555 443", "--peer", "198.51.100.8:40000"},
			[]string{"is not in its trusted_ips: the PROXY header is read and thrown away", "client: 198.51.100.8:40000 (source peer)"}},
	} {
		out, err := runImport(t, explainCommand(), append([]string{"--config", path, "--host", "app.example.com"}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	if _, err := runImport(t, explainCommand(), "--config", path, "--host", "app.example.com", "--proxy", "PROXY TCP9 x", "--peer", "10.0.3.7:1"); err == nil || !strings.Contains(err.Error(), "malformed PROXY header") {
		t.Errorf("a malformed header: %v", err)
	}
}

// A published source's ranges come from the stored list the running server
// keeps (here a file_system storage), as the server judges with them.
func TestExplainWithStoredList(t *testing.T) {
	dir := t.TempDir()
	source := `{"source":"published","url":"https://lists.example/ranges.txt","format":"lines"}`
	key, err := ipsource.StorageKey([]byte(source))
	if err != nil {
		t.Fatal(err)
	}
	stored := `{"source":"https://lists.example/ranges.txt","fetched":"2026-12-01T00:00:00Z","ranges":["198.51.100.0/24"]}`
	if err := (&certmagic.FileStorage{Path: dir}).Store(context.Background(), key, []byte(stored)); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "caddy.json")
	js := `{"storage":{"module":"file_system","root":` + strconv.Quote(dir) + `},"apps":{"http":{"servers":{"web":{"listen":[":8080"],"routes":[{"handle":[` +
		`{"handler":"real_ip","trusted_ips_sources":[` + source + `],"real_ip_header":"X-Forwarded-For"}]}]}}}}}`
	if err := os.WriteFile(config, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runImport(t, explainCommand(), "--config", config, "--peer", "198.51.100.9:4000", "--value", "203.0.113.7")
	if err != nil || !strings.Contains(out, "1 ranges from the stored list") || !strings.Contains(out, "client: 203.0.113.7:0 (source header)") {
		t.Errorf("%v\n%s", err, out)
	}
}
