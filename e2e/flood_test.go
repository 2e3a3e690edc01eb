package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// gauge reads one Go or process metric of Caddy's from the admin endpoint.
func (c *caddyProc) gauge(name string) float64 {
	c.t.Helper()
	resp, err := http.Get("http://" + c.admin + "/metrics")
	if err != nil {
		c.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	c.t.Fatalf("no metric %s", name)
	return 0
}

// freshClientLatencies times n sequential new connections, each with a
// PROXY v2 header and a request, and returns the durations, sorted.
func freshClientLatencies(t *testing.T, addr string, n int) []time.Duration {
	t.Helper()
	header := awsHeader(t)
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		o := exchange(t, "tcp", "127.0.0.1", addr, header, 10*time.Second)
		if o.closed || o.status != 200 {
			t.Fatalf("fresh client: %+v", o)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds
}

func percentile(ds []time.Duration, p float64) time.Duration {
	return ds[int(float64(len(ds)-1)*p)]
}

// floodResult is what one wrapper did under the flood.
type floodResult struct {
	name                  string
	p50, p99, fp50, fp99  time.Duration
	slowestClose          time.Duration
	notClosed             int
	goroutines            [3]float64 // before, during, after
	heapBefore, heapAfter float64
}

// flood opens 1,000 connections that send nothing and 1,000 that send one
// byte of a PROXY header per second, measures a fresh client's latency
// meanwhile, and how long the server takes to close each flood connection.
func flood(t *testing.T, c *caddyProc, name, addr string, timeout time.Duration) floodResult {
	r := floodResult{name: name}
	before := freshClientLatencies(t, addr, 200)
	r.p50, r.p99 = percentile(before, .5), percentile(before, .99)
	r.goroutines[0] = c.gauge("go_goroutines")
	r.heapBefore = c.gauge("go_memstats_heap_inuse_bytes")

	const silent, slow = 1000, 1000
	closedAfter := make([]time.Duration, silent+slow)
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := make([]net.Conn, 0, silent+slow)
	for i := 0; i < silent+slow; i++ {
		conn, err := dialFrom("127.0.0.1")(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		mu.Lock()
		conns = append(conns, conn)
		mu.Unlock()
		start := time.Now()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i >= silent {
				// One byte a second of a header that never completes in time.
				go func() {
					for _, b := range []byte("PROXY TCP4 198.51.100.1 10.0.0.1 1 2\r\n") {
						if _, err := conn.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(time.Second)
					}
				}()
			}
			_ = conn.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			_, _ = io.Copy(io.Discard, conn) // returns when the server closes
			closedAfter[i] = time.Since(start)
		}(i)
	}
	time.Sleep(200 * time.Millisecond)
	r.goroutines[1] = c.gauge("go_goroutines")
	during := freshClientLatencies(t, addr, 200)
	r.fp50, r.fp99 = percentile(during, .5), percentile(during, .99)
	wg.Wait()
	for _, conn := range conns {
		conn.Close()
	}
	for _, d := range closedAfter {
		r.slowestClose = max(r.slowestClose, d)
		if d > timeout+time.Second {
			r.notClosed++
		}
	}
	// Back to the baseline: goroutines right away, the heap once Go has
	// collected (it is not forced here; the figure is reported, not judged).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if r.goroutines[2] = c.gauge("go_goroutines"); r.goroutines[2] <= r.goroutines[0]+20 {
			break
		}
	}
	r.heapAfter = c.gauge("go_memstats_heap_inuse_bytes")
	t.Logf("%-24s fresh client p50 %v p99 %v; during the flood p50 %v p99 %v; slowest flood close %v (%d later than timeout+1s); goroutines %v → %v → %v; heap in use %.1f → %.1f MiB",
		name, r.p50, r.p99, r.fp50, r.fp99, r.slowestClose.Round(time.Millisecond), r.notClosed,
		r.goroutines[0], r.goroutines[1], r.goroutines[2], r.heapBefore/(1<<20), r.heapAfter/(1<<20))
	return r
}

// TestSilentAndSlowFloods: 1,000 silent senders and 1,000 that trickle a
// header byte a second, against Caddy's built-in proxy_protocol wrapper and
// the real_ip wrapper in the same run. For real_ip, every flood connection
// is closed within timeout + 1 s and the goroutines come back to the
// baseline; the latencies are reported for both.
func TestSilentAndSlowFloods(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 2)
	builtin, ours := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	const timeout = 2 * time.Second
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"builtin":{"listen":[%q],"listener_wrappers":[{"wrapper":"proxy_protocol","timeout":"2s","allow":["127.0.0.1/32"]}],
			"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]},
		"real_ip":{"listen":[%q],"listener_wrappers":[{"wrapper":"real_ip","timeout":"2s","trusted_ips":["127.0.0.1"]}],
			"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]}}}}`, builtin, ours))
	flood(t, c, "Caddy's proxy_protocol", builtin, timeout)
	r := flood(t, c, "real_ip", ours, timeout)
	if r.notClosed > 0 {
		t.Errorf("real_ip: %d flood connections outlived timeout + 1s (slowest %v)", r.notClosed, r.slowestClose)
	}
	if r.goroutines[2] > r.goroutines[0]+20 {
		t.Errorf("real_ip: goroutines %v before the flood, %v after", r.goroutines[0], r.goroutines[2])
	}
}

// BenchmarkIdleConnections holds 10,000 idle keep-alive connections (each
// has sent one request: through a wrapper, after its PROXY header) open
// through no wrapper, Caddy's proxy_protocol and real_ip, each in a Caddy
// process of its own, and reports the growth of Caddy's resident memory
// (RSS, process_resident_memory_bytes) and Go heap in use
// (go_memstats_heap_inuse_bytes) per connection.
//
//	go test ./e2e -run '^$' -bench IdleConnections -benchtime 1x
func BenchmarkIdleConnections(b *testing.B) {
	const n = 10000
	for _, v := range []struct{ name, wrapper string }{
		{"no-wrapper", ``},
		{"caddy-proxy_protocol", `"listener_wrappers":[{"wrapper":"proxy_protocol","allow":["127.0.0.1/32"]}],`},
		{"real_ip", `"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],`},
	} {
		b.Run(v.name, func(b *testing.B) {
			c := startCaddy(b)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
			c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":[%q],%s"idle_timeout":"10m",
				"routes":[{"handle":[{"handler":"static_response","body":"ok"}]}]}}}}`, addr, v.wrapper))
			prefix := []byte(nil)
			if v.wrapper != "" {
				prefix = awsHeader(b)
			}
			// Warm up, then the baseline.
			exchange(b, "tcp", "127.0.0.1", addr, prefix, 5*time.Second)
			time.Sleep(500 * time.Millisecond)
			rss0, heap0 := c.gauge("process_resident_memory_bytes"), c.gauge("go_memstats_heap_inuse_bytes")
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, conn := range conns {
					// A reset, so that no socket is left in TIME_WAIT.
					_ = conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
				}
			}()
			req := append(append([]byte(nil), prefix...), "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"...)
			for i := 0; i < n; i++ {
				conn, err := dialFrom("127.0.0.1")(context.Background(), "tcp", addr)
				if err != nil {
					b.Fatalf("connection %d: %v", i, err)
				}
				conns = append(conns, conn)
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("connection %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(time.Second)
			rss1, heap1 := c.gauge("process_resident_memory_bytes"), c.gauge("go_memstats_heap_inuse_bytes")
			b.ReportMetric((rss1-rss0)/n, "RSS-B/conn")
			b.ReportMetric((heap1-heap0)/n, "heap-B/conn")
		})
	}
}

// TestHostileHeaderSizes: with max_header_size raised to 2 MB, a 1 MiB
// X-Forwarded-For and a 100,000-entry chain from a trusted peer are walked
// to the right client, and twenty of them leave Caddy's heap bounded.
func TestHostileHeaderSizes(t *testing.T) {
	c := startCaddy(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":[%q],"max_header_bytes":2097152,
		"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
			{"handler":"static_response","body":"{http.request.remote.host}"}]}]}}}}`, addr))
	var chain strings.Builder
	chain.WriteString("203.0.113.7")
	for i := 1; i < 100000; i++ {
		fmt.Fprintf(&chain, ", 10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
	}
	mib := "203.0.113.8, " + strings.Repeat("10.1.1.1,", (1<<20)/9)
	heap0 := c.gauge("go_memstats_heap_inuse_bytes")
	for i := 0; i < 10; i++ {
		for value, want := range map[string]string{chain.String(): "203.0.113.7", mib: "203.0.113.8"} {
			start := time.Now()
			body, _ := getFrom(t, "127.0.0.1", addr, []string{"X-Forwarded-For: " + value})
			if body != want {
				t.Fatalf("a %d KiB chain: client %q, want %s", len(value)>>10, body, want)
			}
			if i == 0 {
				t.Logf("a %d KiB X-Forwarded-For (%d entries): answered in %v", len(value)>>10, strings.Count(value, ",")+1, time.Since(start).Round(time.Millisecond))
			}
		}
	}
	heap1 := c.gauge("go_memstats_heap_inuse_bytes")
	t.Logf("heap in use %.1f MiB before, %.1f MiB after 20 requests of about 1 MiB", heap0/(1<<20), heap1/(1<<20))
	if heap1-heap0 > 200<<20 {
		t.Errorf("heap grew by %.0f MiB", (heap1-heap0)/(1<<20))
	}
}
