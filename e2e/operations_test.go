package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads the admin endpoint's /metrics and returns every caddy_realip
// sample as "name{labels}" → value.
func (c *caddyProc) scrape() map[string]float64 {
	c.t.Helper()
	resp, err := http.Get("http://" + c.admin + "/metrics")
	if err != nil {
		c.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	samples := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "caddy_realip_") {
			continue
		}
		i := strings.LastIndex(line, " ")
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			c.t.Fatalf("metrics line %q: %v", line, err)
		}
		if _, dup := samples[line[:i]]; dup {
			c.t.Errorf("metric %s appears twice", line[:i])
		}
		samples[line[:i]] = v
	}
	return samples
}

// operationsConfig is one server with the wrapper (trusting 127.0.0.1 and
// UNIX peers, missing_header reject), one with missing_header allow and
// untrusted reject, and one header-mode server without a wrapper.
func operationsConfig(c *caddyProc, ports []int, sock string, trusted string) string {
	route := func(mode string) string {
		return fmt.Sprintf(`"routes":[{"handle":[{"handler":"real_ip","trusted_ips":[%s],"real_ip_header":%q},
			{"handler":"static_response","body":"{http.request.remote.host}"}]}]`, trusted, mode)
	}
	return fmt.Sprintf(`{"http":{"servers":{
		"pp":{"listen":["127.0.0.1:%d","unix/%s"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":[%s],"timeout":"500ms"}],%s},
		"pp_allow":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"],"timeout":"500ms",
			"missing_header":"allow","untrusted":"reject"}],%s},
		"xff":{"listen":["127.0.0.1:%d"],%s}}}}`,
		ports[0], sock, trusted, route("proxy_protocol"), ports[1], route("proxy_protocol"), ports[2], route("X-Forwarded-For"))
}

// TestMetrics exercises every result and source, reads /metrics on the
// admin endpoint, reloads the config, and checks that the counters are kept
// (not reset, not duplicated).
func TestMetrics(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 3)
	sock := filepath.Join(t.TempDir(), "pp.sock")
	c.loadJSON(operationsConfig(c, ports, sock, `"127.0.0.1","unix:"`))
	pp, allow, xff := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	v1 := []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n")

	exchange(t, "tcp", "127.0.0.1", pp, v1, 5*time.Second)                               // accepted, proxy_protocol/true
	exchange(t, "tcp", "127.0.0.1", pp, []byte("PROXY UNKNOWN\r\n"), 5*time.Second)      // local, peer/true
	exchange(t, "tcp", "127.0.0.1", pp, nil, 5*time.Second)                              // missing_rejected
	exchange(t, "tcp", "127.0.0.1", pp, []byte("PROXY TCP4 1.2.3.4\r\n"), 5*time.Second) // malformed
	exchange(t, "tcp", "127.0.0.2", pp, nil, 5*time.Second)                              // untrusted_ignored, peer/false
	exchange(t, "tcp", "127.0.0.1", allow, nil, 5*time.Second)                           // missing_allowed
	exchange(t, "tcp", "127.0.0.2", allow, nil, 5*time.Second)                           // untrusted_rejected
	exchange(t, "unix", "", sock, v1, 5*time.Second)                                     // accepted over UNIX
	getFrom(t, "127.0.0.1", xff, []string{"X-Forwarded-For: 198.51.100.3"})              // header/true
	getFrom(t, "127.0.0.2", xff, []string{"X-Forwarded-For: 198.51.100.3"})              // peer/false
	if conn, err := dialFrom("127.0.0.1")(t.Context(), "tcp", pp); err == nil {          // timeout: half a header
		_, _ = conn.Write([]byte("PROXY TCP4"))
		_, _ = io.ReadAll(conn)
		conn.Close()
	}

	want := []string{
		`caddy_realip_proxy_headers_total{result="accepted",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="local",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="missing_rejected",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="malformed",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="timeout",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="untrusted_ignored",server="pp"}`,
		`caddy_realip_proxy_headers_total{result="missing_allowed",server="pp_allow"}`,
		`caddy_realip_proxy_headers_total{result="untrusted_rejected",server="pp_allow"}`,
		`caddy_realip_requests_total{server="pp",source="proxy_protocol",trusted="true"}`,
		`caddy_realip_requests_total{server="pp",source="peer",trusted="true"}`,
		`caddy_realip_requests_total{server="pp",source="peer",trusted="false"}`,
		`caddy_realip_requests_total{server="xff",source="header",trusted="true"}`,
		`caddy_realip_requests_total{server="xff",source="peer",trusted="false"}`,
		`caddy_realip_header_read_seconds_count{server="pp"}`,
	}
	var before map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		before = c.scrape()
		missing := 0
		for _, k := range want {
			if before[k] <= 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, k := range want {
		if before[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, before[k])
		}
	}
	if n := before[`caddy_realip_proxy_headers_total{result="accepted",server="pp"}`]; n != 2 {
		t.Errorf("accepted = %v, want 2 (TCP and UNIX)", n)
	}
	for k := range before {
		if regexp.MustCompile(`\d+\.\d+\.\d+\.\d+`).MatchString(k) {
			t.Errorf("a label carries an address: %s", k)
		}
	}

	// A reload (with another trusted list) keeps every count, and counting
	// goes on.
	c.loadJSON(operationsConfig(c, ports, sock, `"127.0.0.1","127.0.0.5","unix:"`))
	exchange(t, "tcp", "127.0.0.1", pp, v1, 5*time.Second)
	after := c.scrape()
	for _, k := range want {
		if after[k] < before[k] {
			t.Errorf("after a reload %s = %v, was %v", k, after[k], before[k])
		}
	}
	if a, b := after[`caddy_realip_proxy_headers_total{result="accepted",server="pp"}`], before[`caddy_realip_proxy_headers_total{result="accepted",server="pp"}`]; a != b+1 {
		t.Errorf("accepted after the reload = %v, want %v", a, b+1)
	}
}

// TestRefusalFloodIsQuiet: 1,000 malformed headers from one peer write a
// handful of warnings, and a refusal from another peer in the middle of the
// flood is logged.
func TestRefusalFloodIsQuiet(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(`{"http":{"servers":{"pp":{"listen":["` + addr + `"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.0/8"]}],
		"routes":[{"handle":[{"handler":"static_response","body":"ok"}]}]}}}}`)
	start := time.Now()
	for i := 0; i < 1000; i++ {
		conn, err := dialFrom("127.0.0.1")(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"))
		_, _ = io.ReadAll(conn)
		conn.Close()
		if i == 500 {
			exchange(t, "tcp", "127.0.0.9", addr, []byte("PROXY TCP9\r\n"), 5*time.Second)
		}
		time.Sleep(2 * time.Millisecond) // spread over a few seconds, so some lines get through
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	var fromFlood, fromOther, suppressed int
	for _, line := range strings.Split(c.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"malformed PROXY header"`) {
			continue
		}
		var entry struct {
			Peer       string `json:"peer"`
			Suppressed int    `json:"suppressed"`
		}
		_ = json.Unmarshal([]byte(line), &entry)
		host, _, _ := net.SplitHostPort(entry.Peer)
		switch host {
		case "127.0.0.1":
			fromFlood++
			suppressed += entry.Suppressed
		case "127.0.0.9":
			fromOther++
		}
	}
	t.Logf("1,000 malformed headers in %v: %d warning lines (%d reported as suppressed)", elapsed.Round(time.Millisecond), fromFlood, suppressed)
	// At most one line a second, plus the first.
	if limit := int(elapsed/time.Second) + 2; fromFlood < 1 || fromFlood > limit {
		t.Errorf("the flood wrote %d lines in %v, want 1 to %d", fromFlood, elapsed, limit)
	}
	if fromFlood > 1 && suppressed == 0 {
		t.Errorf("no line reports suppressed warnings")
	}
	if fromOther != 1 {
		t.Errorf("the other peer's refusal was logged %d times, want 1", fromOther)
	}
}

// TestLoadWarningsAndErrors: a trust list that covers every address is
// loaded with a warning that says what it means; one that can never trust
// a peer of its server is refused.
func TestLoadWarningsAndErrors(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["0.0.0.0/0","::/0"]}],
		"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["0.0.0.0/1","128.0.0.0/1"],"real_ip_header":"X-Forwarded-For"}]}]}}}}`, port))
	for _, want := range []string{
		`"logger":"caddy.listeners.real_ip","msg":"trusted_ips covers every IPv4 and IPv6 address; any client that can reach this port directly can choose its own address`,
		`"logger":"http.handlers.real_ip","msg":"trusted_ips covers every IPv4 address; any client that can reach this port directly can choose its own address`,
	} {
		if !c.waitLogged(want) {
			t.Errorf("no warning %q", want)
		}
	}
	for cfg, want := range map[string]string{
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["unix/%s"],
			"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["10.0.0.0/8"]}]}]}}}}`, sock): "trusted_ips has no unix:, but this server listens only on UNIX sockets",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["unix/%s"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"]}]}}}}`, sock): "add unix: to trusted_ips",
		fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
			"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["unix:"]}]}]}}}}`, port): "trusted_ips has only unix:, but this server listens only on TCP",
	} {
		c.refuseJSON(cfg, want)
	}
}

// TestDebugDecisionLog: at debug level each decision is one log line with
// the peer, trust, header and value, the walk, the client and the source.
func TestDebugDecisionLog(t *testing.T) {
	c := startCaddy(t)
	port := freePort(t)
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
			{"handler":"static_response","body":"ok"}]}]}}}}`, port))
	code, msg := c.post(fmt.Sprintf(`{"admin":{"listen":%q},"logging":{"logs":{"default":{"level":"DEBUG"}}},"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],
		"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
			{"handler":"static_response","body":"ok"}]}]}}}}}`, c.admin, port), "application/json")
	if code != 200 {
		t.Fatalf("%d %s", code, msg)
	}
	long := strings.Repeat("10.9.9.9, ", 100)
	getFrom(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", port), []string{"X-Forwarded-For: " + long + "203.0.113.7, 10.0.3.1"})
	// The line is longer than a pipe's atomic write: wait for its end.
	c.waitLogged(`"client":"203.0.113.7:0","source":"header"}`)
	var entry struct {
		Peer    string   `json:"peer"`
		Trusted bool     `json:"trusted"`
		Header  string   `json:"header"`
		Value   string   `json:"value"`
		Walk    []string `json:"walk"`
		Client  string   `json:"client"`
		Source  string   `json:"source"`
	}
	found := false
	for _, line := range strings.Split(c.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"real_ip decision"`) && json.Unmarshal([]byte(line), &entry) == nil {
			found = true
		}
	}
	if !found {
		t.Fatal("no debug decision line")
	}
	if !strings.HasPrefix(entry.Peer, "127.0.0.1:") || !entry.Trusted || entry.Header != "X-Forwarded-For" || entry.Client != "203.0.113.7:0" || entry.Source != "header" {
		t.Errorf("decision line: %+v", entry)
	}
	if len(entry.Value) > 300 || !strings.Contains(entry.Value, "bytes)") {
		t.Errorf("value not cut to a bounded length: %d bytes", len(entry.Value))
	}
	if len(entry.Walk) != 2 || !strings.HasPrefix(entry.Walk[0], "10.0.3.1: trusted") || !strings.HasPrefix(entry.Walk[1], "203.0.113.7: not trusted") {
		t.Errorf("walk: %q", entry.Walk)
	}
}
