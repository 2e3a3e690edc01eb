package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPoisonedListsNeverWidenTrust serves every form of a list that would
// trust everyone to the built binary, where the real_ip handler, the
// listener wrapper and Caddy's own trusted_proxies all take it through the
// published source. The decision for an untrusted peer (127.0.0.2) never
// changes, the trusted one (127.0.0.3) stays trusted by the last good list,
// and /metrics counts each refusal.
func TestPoisonedListsNeverWidenTrust(t *testing.T) {
	var mu sync.Mutex
	list, hits, hang := "127.0.0.3/32\n", 0, false
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		l, h := list, hang
		mu.Unlock()
		if h {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, l)
	}))
	defer srv.Close()
	defer close(release)
	serve := func(l string) int {
		mu.Lock()
		defer mu.Unlock()
		list = l
		return hits
	}
	waitHits := func(n int) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			h := hits
			mu.Unlock()
			if h >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the list server was asked %d times, want %d", h, n)
			}
		}
	}

	storage := filepath.Join(t.TempDir(), "caddy")
	ports := freePorts(t, 3)
	source := fmt.Sprintf(`{"source":"published","url":%q,"interval":"1s","timeout":"1s"}`, srv.URL+"/ranges.txt?key=s3cret")
	c := startCaddy(t)
	config := fmt.Sprintf(`{"admin":{"listen":%q},"storage":{"module":"file_system","root":%q},"apps":{"http":{"servers":{
		"xff":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips_sources":[%s],"real_ip_header":"X-Forwarded-For"},
			{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
		"pp":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips_sources":[%s]}],
			"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
		"core":{"listen":["127.0.0.1:%d"],"trusted_proxies":%s,"client_ip_headers":["X-Forwarded-For"],
			"routes":[{"handle":[{"handler":"static_response","body":"{http.vars.client_ip}"}]}]}}}}}`,
		c.admin, storage, ports[0], source, ports[1], source, ports[2], source)
	if code, msg := c.post(config, "application/json"); code != 200 {
		t.Fatalf("load: %d %s", code, msg)
	}
	addrs := map[string]string{}
	for i, name := range []string{"xff", "pp", "core"} {
		addrs[name] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	ask := func(from, server string) string {
		var prefix []byte
		if server == "pp" {
			prefix = []byte("PROXY TCP4 203.0.113.9 192.0.2.1 5555 80\r\n")
		}
		conn, err := dialFrom(from)(t.Context(), "tcp", addrs[server])
		if err != nil {
			t.Fatal(err)
		}
		o, err := tryRoundTrip(conn, append(prefix, request([]string{"X-Forwarded-For: 198.51.100.7"})...), 5*time.Second)
		if err != nil || o.closed {
			return fmt.Sprintf("(no answer: %v)", err)
		}
		return o.body
	}
	check := func(when string) {
		t.Helper()
		for _, server := range []string{"xff", "pp", "core"} {
			if got := ask("127.0.0.2", server); got != "127.0.0.2" {
				t.Errorf("%s, %s: the untrusted peer became %q", when, server, got)
			}
		}
		want := map[string]string{"xff": "198.51.100.7", "pp": "203.0.113.9", "core": "198.51.100.7"}
		for server, w := range want {
			if got := ask("127.0.0.3", server); got != w {
				t.Errorf("%s, %s: the listed peer's client is %q, want %q (the last good list)", when, server, got, w)
			}
		}
	}
	check("good list")

	poisoned := []struct{ name, body string }{
		{"0.0.0.0/0", "0.0.0.0/0\n"},
		{"::/0", "::/0\n127.0.0.3/32\n"},
		{"two halves", "0.0.0.0/1\n128.0.0.0/1\n"},
		{"IPv4-mapped", "::ffff:0.0.0.0/96\n"},
		{"mapped half and an IPv4 half", "::ffff:0.0.0.0/97\n128.0.0.0/1\n"},
		{"an IPv6 range holding the IPv4 space", "::/64\n"},
		{"AWS JSON", `{"prefixes":[{"ip_prefix":"0.0.0.0/0","region":"GLOBAL","service":"AMAZON"}]}`},
	}
	for _, p := range poisoned {
		before := serve(p.body)
		waitHits(before + 2) // two refreshes after the change
		check(p.name)
	}

	samples := c.scrape()
	label := `source="published:` + strings.TrimPrefix(srv.URL, "http://") + `/ranges.txt"`
	for _, m := range []string{
		`caddy_realip_source_refreshes_total{result="refused_covers_all",` + label + `}`,
		`caddy_realip_source_ranges{` + label + `}`,
		`caddy_realip_source_last_success_timestamp_seconds{` + label + `}`,
	} {
		if samples[m] == 0 {
			t.Errorf("%s = %v", m, samples[m])
		}
	}
	if got := samples[`caddy_realip_source_refreshes_total{result="refused_covers_all",`+label+`}`]; got < float64(2*len(poisoned)) {
		t.Errorf("refused_covers_all = %v, want at least %d", got, 2*len(poisoned))
	}
	if got := samples[`caddy_realip_source_ranges{`+label+`}`]; got != 1 {
		t.Errorf("source_ranges = %v, want 1 (the last good list)", got)
	}
	for name := range samples {
		if strings.Contains(name, "s3cret") {
			t.Errorf("a metric carries the URL's query: %s", name)
		}
	}
	if !c.waitLogged("refused: the list covers every IPv4 address") {
		t.Errorf("no warning names the refusal")
	}

	// A list server that hangs does not hold up a config load: the stored
	// list is used and the download goes on in the background.
	mu.Lock()
	hang = true
	mu.Unlock()
	start := time.Now()
	if code, msg := c.post(strings.Replace(config, `"interval":"1s"`, `"interval":"2s"`, -1), "application/json"); code != 200 {
		t.Fatalf("reload while the list server hangs: %d %s", code, msg)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a load with a stored list waited %v on a hanging list server", took)
	}
	t.Logf("a load with a stored list and a hanging list server took %v", time.Since(start).Round(time.Millisecond))
	check("list server hanging")
}
