package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reloadCounts is what a load run saw.
type reloadCounts struct {
	sent, closed, failed, misjudged atomic.Int64
	probes, probesMisjudged         atomic.Int64
	examples                        sync.Map // first few misjudgements, for the failure message
}

func (c *reloadCounts) String() string {
	return fmt.Sprintf("sent %d, closed %d, failed %d, misjudged %d; probes after /load %d, misjudged %d",
		c.sent.Load(), c.closed.Load(), c.failed.Load(), c.misjudged.Load(), c.probes.Load(), c.probesMisjudged.Load())
}

// reloadVariant is one side of the comparison: how to build its config for
// reload i, and what a probe from 127.0.0.3 must get under reload i.
type reloadVariant struct {
	name      string
	config    func(i int) string // the apps JSON
	probe     func(conn net.Conn) (string, error)
	wantProbe func(i int) string
	// answers each load request may get, whatever the config of the moment
	xffAnswers, ppAnswers map[string]bool
}

// runReloadLoad drives a variant: keep-alive requests with X-Forwarded-For
// and new connections with a PROXY v2 header, while the config is replaced
// ten times through POST /load; after each /load returns, probes on new
// connections must be judged by the new config.
func runReloadLoad(t *testing.T, c *caddyProc, v reloadVariant, xffAddr, ppAddr string) *reloadCounts {
	counts := &reloadCounts{}
	c.loadJSON(v.config(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	misjudge := func(what string) {
		if counts.misjudged.Add(1) <= 5 {
			counts.examples.Store(what, true)
		}
	}
	classify := func(err error) {
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
			errors.As(err, &ne) && !ne.Timeout(), strings.Contains(fmt.Sprint(err), "connection reset"),
			strings.Contains(fmt.Sprint(err), "broken pipe"), strings.Contains(fmt.Sprint(err), "connection refused"):
			counts.closed.Add(1)
		default:
			counts.failed.Add(1)
		}
	}
	// Keep-alive X-Forwarded-For requests from the trusted 127.0.0.1.
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			for {
				select {
				case <-stop:
					if conn != nil {
						conn.Close()
					}
					return
				default:
				}
				if conn == nil {
					var err error
					if conn, err = dialFrom("127.0.0.1")(context.Background(), "tcp", xffAddr); err != nil {
						counts.sent.Add(1)
						classify(err)
						continue
					}
					br = bufio.NewReader(conn)
				}
				counts.sent.Add(1)
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n")
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				if err != nil {
					classify(err)
					conn.Close()
					conn = nil
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					counts.failed.Add(1)
				case !v.xffAnswers[string(body)]:
					misjudge("xff: " + string(body))
				}
				if resp.Close {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	// New connections, each with a PROXY v2 header from the trusted 127.0.0.1.
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			header := awsHeader(t)
			for {
				select {
				case <-stop:
					return
				default:
				}
				counts.sent.Add(1)
				conn, err := dialFrom("127.0.0.1")(context.Background(), "tcp", ppAddr)
				if err != nil {
					classify(err)
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = conn.Write(append(append([]byte(nil), header...), "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"...))
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
				}
				if err != nil {
					classify(err)
					conn.Close()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				conn.Close()
				switch {
				case resp.StatusCode != 200:
					counts.failed.Add(1)
				case !v.ppAnswers[string(body)]:
					misjudge("pp: " + string(body))
				}
			}
		}()
	}

	time.Sleep(500 * time.Millisecond)
	for i := 1; i <= 10; i++ {
		c.loadJSON(v.config(i))
		// /load has returned: a request on a new connection gets the new config.
		// A connection that Caddy's own reload resets or closes without an
		// answer is counted as closed and tried again; an answer must be
		// the new config's.
		for p := 0; p < 5; p++ {
			counts.probes.Add(1)
			var got string
			var err error
			for try := 0; try < 5; try++ {
				var conn net.Conn
				if conn, err = dialFrom("127.0.0.3")(context.Background(), "tcp", ppAddr); err == nil {
					got, err = v.probe(conn)
					conn.Close()
				}
				if err == nil {
					break
				}
				counts.closed.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("%s: probe after reload %d: no answer in five tries: %v", v.name, i, err)
				continue
			}
			if got != v.wantProbe(i) {
				counts.probesMisjudged.Add(1)
				t.Errorf("%s: probe after reload %d: %q, want %q", v.name, i, got, v.wantProbe(i))
			}
		}
		time.Sleep(700 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	counts.examples.Range(func(k, _ any) bool {
		t.Logf("%s: misjudged: %v", v.name, k)
		return true
	})
	return counts
}

// probeWithPROXY sends a PROXY v1 header naming 198.51.100.9 and a request,
// and returns the body (the client the server saw).
func probeWithPROXY(conn net.Conn) (string, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "PROXY TCP4 198.51.100.9 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// TestReloadUnderLoad replaces the config ten times through the admin API
// under load, changing the trusted list each time (127.0.0.3 is trusted on
// even reloads only), first with Caddy's built-in proxy_protocol wrapper and
// no handler (the baseline: Caddy's own graceful reload closes a few new
// connections), then with the real_ip wrapper and handler. The plugin must
// add no failure: no error response, no answer outside what the configs
// allow, a probe after each /load judged by the new config, and no more
// closed connections than the baseline within noise.
func TestReloadUnderLoad(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 2)
	xffAddr, ppAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	trusted := func(i int) string {
		if i%2 == 0 {
			return `"127.0.0.1","127.0.0.3"`
		}
		return `"127.0.0.1"`
	}
	wantProbe := func(i int) string {
		if i%2 == 0 {
			return "198.51.100.9"
		}
		return "127.0.0.3"
	}
	baseline := reloadVariant{
		name: "Caddy's proxy_protocol",
		config: func(i int) string {
			cidrs := strings.ReplaceAll(strings.ReplaceAll(trusted(i), `1"`, `1/32"`), `3"`, `3/32"`)
			return fmt.Sprintf(`{"http":{"servers":{
				"xff":{"listen":[%q],"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
				"pp":{"listen":[%q],"listener_wrappers":[{"wrapper":"proxy_protocol","timeout":"5s","allow":[%s]}],
					"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]}}}}`, xffAddr, ppAddr, cidrs)
		},
		probe: probeWithPROXY, wantProbe: wantProbe,
		xffAnswers: map[string]bool{"127.0.0.1": true},
		ppAnswers:  map[string]bool{"203.0.113.9": true},
	}
	plugin := reloadVariant{
		name: "real_ip",
		config: func(i int) string {
			return fmt.Sprintf(`{"http":{"servers":{
				"xff":{"listen":[%q],"routes":[{"handle":[{"handler":"real_ip","trusted_ips":[%s],"real_ip_header":"X-Forwarded-For"},
					{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
				"pp":{"listen":[%q],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":[%s]}],
					"routes":[{"handle":[{"handler":"real_ip","trusted_ips":[%s],"real_ip_header":"proxy_protocol"},
					{"handler":"static_response","body":"{http.request.remote.host}"}]}]}}}}`, xffAddr, trusted(i), ppAddr, trusted(i), trusted(i))
		},
		probe: probeWithPROXY, wantProbe: wantProbe,
		xffAnswers: map[string]bool{"198.51.100.7": true},
		ppAnswers:  map[string]bool{"203.0.113.9": true},
	}
	base := runReloadLoad(t, c, baseline, xffAddr, ppAddr)
	ours := runReloadLoad(t, c, plugin, xffAddr, ppAddr)
	t.Logf("baseline (%s): %v", baseline.name, base)
	t.Logf("plugin   (%s): %v", plugin.name, ours)
	if ours.failed.Load() != 0 || ours.misjudged.Load() != 0 || ours.probesMisjudged.Load() != 0 {
		t.Errorf("the plugin failed or misjudged requests: %v", ours)
	}
	if base.failed.Load() != 0 || base.misjudged.Load() != 0 {
		t.Logf("note: the baseline itself failed or misjudged: %v", base)
	}
	// Closed connections are Caddy's own reload behaviour; the plugin may
	// not add to them beyond the noise of two runs.
	if limit := 3*base.closed.Load() + 30; ours.closed.Load() > limit {
		t.Errorf("the plugin closed %d connections, the baseline %d (limit %d)", ours.closed.Load(), base.closed.Load(), limit)
	}
	if ours.sent.Load() < 1000 || base.sent.Load() < 1000 {
		t.Errorf("too little load: %v / %v", ours, base)
	}
}
