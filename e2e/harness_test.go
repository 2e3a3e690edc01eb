// Package e2e runs the real Caddy binary, built once per test run with
// ../xcaddy.sh, and talks to it over sockets: HTTP requests from several
// loopback source addresses and over UNIX sockets, raw PROXY headers, and the
// same cases against nginx for conformance.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var caddyBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "realip-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	caddyBin = os.Getenv("REALIP_CADDY")
	if caddyBin == "" {
		caddyBin = filepath.Join(tmp, "caddy")
		root, _ := filepath.Abs("..")
		cmd := exec.Command(filepath.Join(root, "xcaddy.sh"), "build", "--output", caddyBin)
		cmd.Dir = root
		if os.Getenv("REALIP_RACE") == "1" {
			// test.sh builds the binary with the race detector, so the
			// server paths the e2e tests drive are checked too.
			cmd.Env = append(os.Environ(), "XCADDY_RACE_DETECTOR=1")
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building caddy with xcaddy.sh: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// freePorts returns n distinct TCP ports that were free a moment ago on
// every address: each is held by a dual-stack wildcard listener until all n
// are found, so none is handed out twice. They are taken outside the
// kernel's ephemeral range, so that no outgoing connection (the tests make
// tens of thousands, and Caddy's reverse_proxy makes more) can take one as
// its source port between now and the moment Caddy binds it.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := portsOutsideEphemeral()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			t.Fatalf("no free port in %d-%d", lo, hi)
		}
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, port)
	}
	return ports
}

// portsOutsideEphemeral is a range of ports the kernel does not hand out as
// source ports (net.ipv4.ip_local_port_range, 32768-60999 by default).
func portsOutsideEphemeral() (lo, hi int) {
	first, last := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &first, &last)
	}
	if first-10000 >= 2000 {
		return 10000, first
	}
	return last + 1, 65535
}

// freePort returns one TCP port that was free a moment ago. Tests that
// need several take them from one freePorts call.
func freePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// lockedBuffer collects a process's output for assertions and failure logs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// caddyProc is a running Caddy, configured through its admin API.
type caddyProc struct {
	t     testing.TB
	cmd   *exec.Cmd
	admin string
	logs  *lockedBuffer
	dir   string
}

// startCaddy runs the built binary with only an admin endpoint; tests load
// their configs with POST /load, as users of the admin API do.
func startCaddy(t testing.TB) *caddyProc {
	t.Helper()
	return startCaddyWith(t)
}

// startCaddyWith is startCaddy with a command in front of the binary, such
// as taskset -c 1 to give Caddy a CPU of its own.
func startCaddyWith(t testing.TB, prefix ...string) *caddyProc {
	t.Helper()
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`{"admin":{"listen":%q}}`, admin)
	cfgFile := filepath.Join(dir, "boot.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &caddyProc{t: t, admin: admin, logs: &lockedBuffer{}, dir: dir}
	args := append(append(prefix[:len(prefix):len(prefix)], caddyBin), "run", "--config", cfgFile)
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	c.cmd.Stdout = c.logs
	c.cmd.Stderr = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		if strings.Contains(c.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in caddy")
		}
		if t.Failed() {
			t.Logf("caddy output:\n%s", c.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy admin API did not come up: %v\n%s", err, c.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLogged reports whether Caddy's output holds text, waiting up to 5 s
// for it: a line reaches the test through a pipe a moment after Caddy
// writes it, and may come after the response to the request that caused it.
func (c *caddyProc) waitLogged(text string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(c.logs.String(), text) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// post sends a config to /load and returns the status and body. A load
// restarts the admin endpoint a moment after it answers, so a connection
// that is refused or reset is retried for a while; every test config loads
// the same way twice, so a retry after a lost response is harmless.
func (c *caddyProc) post(body, contentType string) (int, string) {
	c.t.Helper()
	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("POST", "http://"+c.admin+"/load", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		// Each load restarts the admin endpoint, which drops kept-alive
		// connections: use a new one every time.
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	c.t.Fatalf("POST /load: %v", lastErr)
	return 0, ""
}

// loadCaddyfile loads a Caddyfile; the admin endpoint is kept.
func (c *caddyProc) loadCaddyfile(caddyfile string) {
	c.t.Helper()
	global := fmt.Sprintf("\n\tadmin %s\n\tskip_install_trust\n\tstorage file_system %s\n", c.admin, c.dir)
	body := "{" + global + "}\n" + caddyfile
	trimmed := strings.TrimSpace(caddyfile)
	for strings.HasPrefix(trimmed, "#") { // leading comment lines
		_, trimmed, _ = strings.Cut(trimmed, "\n")
		trimmed = strings.TrimSpace(trimmed)
	}
	if strings.HasPrefix(trimmed, "{") {
		body = "{" + global + trimmed[1:] // merged into the Caddyfile's own global options
	}
	if code, msg := c.post(body, "text/caddyfile"); code != 200 {
		c.t.Fatalf("load Caddyfile: %d %s\n%s", code, msg, body)
	}
}

// loadJSON loads a JSON config whose "apps" are given; admin is kept.
func (c *caddyProc) loadJSON(apps string) {
	c.t.Helper()
	body := fmt.Sprintf(`{"admin":{"listen":%q},"apps":%s}`, c.admin, apps)
	if code, msg := c.post(body, "application/json"); code != 200 {
		c.t.Fatalf("load JSON: %d %s\n%s", code, msg, body)
	}
}

// refuseJSON posts a JSON config whose "apps" are given to /load and fails
// the test unless Caddy refuses it with an error containing want (the
// running config then stays).
func (c *caddyProc) refuseJSON(apps, want string) {
	c.t.Helper()
	code, msg := c.post(fmt.Sprintf(`{"admin":{"listen":%q},"apps":%s}`, c.admin, apps), "application/json")
	if code == 200 || !strings.Contains(msg, want) {
		c.t.Errorf("want an error containing %q, got %d %s", want, code, msg)
	}
}

// dialFrom returns a dialer whose connections leave from the loopback
// address src (127.0.0.0/8 is all loopback on Linux).
//
// The source port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), as
// for an unbound socket: bind(2) alone would need a port free of every
// socket, TIME_WAIT ones included, and the load tests leave tens of
// thousands of those behind.
func dialFrom(src string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			_ = c.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return err
		}
	}
	return d.DialContext
}

// request is a raw HTTP/1.1 GET for localhost with the given header lines,
// written out exactly as given.
func request(headers []string) []byte {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// rawRequest sends one raw request on conn and returns the body of a 200
// response. Raw, so that header lines go out exactly as written.
func rawRequest(t testing.TB, conn net.Conn, headers []string) (string, error) {
	t.Helper()
	o := roundTrip(t, conn, request(headers), 10*time.Second)
	switch {
	case o.closed:
		return "", errors.New("closed without a response")
	case o.status != 200:
		return "", fmt.Errorf("status %d: %s", o.status, o.body)
	}
	return o.body, nil
}

// getFrom sends a request from source address src to a TCP address and
// returns the body and the client's local port.
func getFrom(t testing.TB, src, addr string, headers []string) (body string, localPort int) {
	t.Helper()
	conn, err := dialFrom(src)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	localPort = conn.LocalAddr().(*net.TCPAddr).Port
	body, err = rawRequest(t, conn, headers)
	if err != nil {
		t.Fatalf("request to %s from %s: %v", addr, src, err)
	}
	return body, localPort
}

// getUnix sends a request over a UNIX socket.
func getUnix(t testing.TB, path string, headers []string) string {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	body, err := rawRequest(t, conn, headers)
	if err != nil {
		t.Fatalf("request to %s: %v", path, err)
	}
	return body
}

// getWhileIssuing sends the request that newRequest makes through client,
// again every 100 ms for up to 20 s while it fails: Caddy's internal CA
// issues a site's certificate (and HTTP/3 comes up with it) just after a
// config loads. It returns the response, and its body read and closed.
func getWhileIssuing(t testing.TB, client *http.Client, newRequest func() *http.Request) (*http.Response, []byte) {
	t.Helper()
	var resp *http.Response
	var err error
	req := newRequest()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err = client.Do(req); err == nil || time.Now().After(deadline) {
			break
		}
		req = newRequest()
	}
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// newGet returns a function making a GET of url with the given header
// lines ("Name: value"), each added in order.
func newGet(url string, headers ...string) func() *http.Request {
	return func() *http.Request {
		req, _ := http.NewRequest("GET", url, nil)
		for _, h := range headers {
			name, value, _ := strings.Cut(h, ": ")
			req.Header.Add(name, value)
		}
		return req
	}
}
