package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPublishedRangesLive: the handler and the listener wrapper trust a
// published list that a local server serves, changes, breaks and stops.
// While requests flow, the decision for a fixed client follows the list
// within one refresh interval, with no restart and no failed request; a
// broken or missing list keeps the last good one; and a second Caddy
// process sharing the storage folder starts with the stored list while the
// server is down.
func TestPublishedRangesLive(t *testing.T) {
	var mu sync.Mutex
	list, up := "127.0.0.3/32\n", true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, list)
	}))
	defer srv.Close()
	setList := func(l string, u bool) {
		mu.Lock()
		list, up = l, u
		mu.Unlock()
	}

	storage := t.TempDir()
	ports := freePorts(t, 4)
	config := func(c *caddyProc, xffPort, ppPort int) string {
		source := fmt.Sprintf(`{"source":"published","url":%q,"interval":"1s"}`, srv.URL+"/ranges.txt")
		return fmt.Sprintf(`{"admin":{"listen":%q},"storage":{"module":"file_system","root":%q},"apps":{"http":{"servers":{
			"xff":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[
				{"handler":"real_ip","trusted_ips_sources":[%s],"real_ip_header":"X-Forwarded-For"},
				{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
			"pp":{"listen":["127.0.0.1:%d"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips_sources":[%s]}],
				"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]}}}}}`,
			c.admin, filepath.Join(storage, "caddy"), xffPort, source, ppPort, source)
	}
	a := startCaddy(t)
	if code, msg := a.post(config(a, ports[0], ports[1]), "application/json"); code != 200 {
		t.Fatalf("load: %d %s", code, msg)
	}
	xff, pp := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	// ask sends a request from 127.0.0.3: with X-Forwarded-For, and on the
	// wrapper's port after a PROXY header.
	ask := func(addr string) (string, bool) {
		var prefix []byte
		if addr == pp {
			prefix = []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n")
		}
		conn, err := dialFrom("127.0.0.3")(t.Context(), "tcp", addr)
		if err != nil {
			return "", false
		}
		o, err := tryRoundTrip(conn, append(prefix, request([]string{"X-Forwarded-For: 198.51.100.7"})...), 5*time.Second)
		return o.body, err == nil && !o.closed && o.status == 200
	}

	// Requests flow all along, from the client whose trust the list decides.
	var sent, failed atomic.Int64
	var answers sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			sent.Add(1)
			body, ok := ask(xff)
			if !ok {
				failed.Add(1)
			}
			answers.Store(body, true)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	if got, _ := ask(xff); got != "198.51.100.7" {
		t.Fatalf("listed: %q, want the X-Forwarded-For client", got)
	}
	if got, _ := ask(pp); got != "203.0.113.9" {
		t.Fatalf("listed PROXY sender: %q, want the PROXY source", got)
	}

	// The list changes: 127.0.0.3 is no longer in it.
	changed := time.Now()
	setList("192.0.2.0/24\n", true)
	waitAnswer := func(addr, want string, within time.Duration) time.Duration {
		start := time.Now()
		for {
			if got, _ := ask(addr); got == want {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("%s: still not %q after %v", addr, want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAnswer(xff, "127.0.0.3", 5*time.Second)
	waitAnswer(pp, "127.0.0.3", 5*time.Second)
	t.Logf("the decision followed the list %v after it changed (interval 1s; the trusted set polls its sources every 250ms)", time.Since(changed).Round(10*time.Millisecond))

	// Broken, then gone: the last good list stays.
	setList("<html>maintenance</html>", true)
	time.Sleep(2500 * time.Millisecond)
	if got, _ := ask(xff); got != "127.0.0.3" {
		t.Errorf("after a broken download: %q", got)
	}
	setList("127.0.0.3/32\n", false)
	time.Sleep(2500 * time.Millisecond)
	if got, _ := ask(xff); got != "127.0.0.3" {
		t.Errorf("with the server down: %q", got)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while the list changed", failed.Load(), sent.Load())
	}
	t.Logf("%d requests during the run, %d failed", sent.Load(), failed.Load())

	// A second replica with the same storage folder starts while the
	// server is down, from the stored list (192.0.2.0/24, which does not
	// hold 127.0.0.3).
	b := startCaddy(t)
	if code, msg := b.post(config(b, ports[2], ports[3]), "application/json"); code != 200 {
		t.Fatalf("second replica, server down: %d %s", code, msg)
	}
	if got, _ := ask(fmt.Sprintf("127.0.0.1:%d", ports[2])); got != "127.0.0.3" {
		t.Errorf("second replica: %q, want the stored list's decision", got)
	}
	if !b.waitLogged("using the last good list from storage") {
		t.Errorf("the second replica does not say it used the stored list")
	}

	// A replica whose list is neither downloadable nor stored does not load.
	c := startCaddy(t)
	other := strings.ReplaceAll(config(c, ports[2], ports[3]), "/ranges.txt", "/other.txt")
	other = strings.ReplaceAll(other, filepath.Join(storage, "caddy"), filepath.Join(t.TempDir(), "empty"))
	if code, msg := c.post(other, "application/json"); code == 200 || !strings.Contains(msg, "no list is stored yet") {
		t.Errorf("nothing to trust: %d %s", code, msg)
	}
}
