package plugins

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "realip-plugins-")
	if err != nil {
		panic(err)
	}
	caddyBin = filepath.Join(dir, "caddy")
	if out, err := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building Caddy with the plugins: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// run starts Caddy on caddyfile and waits until port accepts.
func run(t *testing.T, caddyfile string, port int) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return path
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not start:\n%s", logs.String())
		}
	}
}

// send makes one request from the "balancer" (127.0.0.1) after prefix (a
// PROXY header) with extra header lines, and returns the status and body.
func send(t *testing.T, port int, prefix string, headers ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := prefix + "GET / HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := fmt.Fprint(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

const limits = `	blocklist 203.0.113.66
	rate_limit {
		zone per_client {
			key {remote_host}
			events 3
			window 1m
		}
	}
	respond "ok {client_ip}"
`

// Two clients behind one trusted balancer get a bucket each, and the block
// hits the listed client, not the balancer: with X-Forwarded-For and with
// the PROXY protocol. The order trap (another plugin ordered first after
// real_ip) buckets everyone together, and caddy real-ip check names it.
func TestWithRateLimitAndBlocklist(t *testing.T) {
	for _, mode := range []string{"header", "proxy_protocol"} {
		t.Run(mode, func(t *testing.T) {
			for _, fixed := range []bool{true, false} {
				port := freePort(t)
				global := "\tadmin off\n\torder rate_limit first\n\torder blocklist first\n"
				if fixed {
					global += "\torder real_ip first\n"
				}
				handler := "\treal_ip 127.0.0.1 {\n\t\treal_ip_header X-Forwarded-For\n\t}\n"
				if mode == "proxy_protocol" {
					global += fmt.Sprintf("\tservers :%d {\n\t\tlistener_wrappers {\n\t\t\treal_ip 127.0.0.1\n\t\t}\n\t}\n", port)
					handler = "\treal_ip 127.0.0.1 {\n\t\treal_ip_header proxy_protocol\n\t}\n"
				}
				cf := fmt.Sprintf("{\n%s}\n\nhttp://:%d {\n%s%s}\n", global, port, handler, limits)
				path := run(t, cf, port)
				client := func(ip string) (int, string) {
					if mode == "proxy_protocol" {
						return send(t, port, fmt.Sprintf("PROXY TCP4 %s 127.0.0.1 5555 %d\r\n", ip, port))
					}
					return send(t, port, "", "X-Forwarded-For: "+ip)
				}
				var a []int
				for range 4 {
					status, _ := client("203.0.113.7")
					a = append(a, status)
				}
				bStatus, bBody := client("203.0.113.8")
				blocked, _ := client("203.0.113.66")
				out, err := exec.Command(caddyBin, "real-ip", "check", "--config", path).CombinedOutput()
				t.Logf("order real_ip first %v: client A %v, client B %d %q, listed client %d; check: %v\n%s", fixed, a, bStatus, bBody, blocked, err, out)
				// Behind the wrapper the connection's address is the client
				// before any handler runs: the order does not matter.
				if fixed || mode == "proxy_protocol" {
					if fmt.Sprint(a) != "[200 200 200 429]" || bStatus != 200 || !strings.Contains(bBody, "203.0.113.8") || blocked != 403 {
						t.Errorf("client A %v (want 3 then 429), client B %d, listed client %d (want 403)", a, bStatus, blocked)
					}
					if err != nil || strings.Contains(string(out), "error:") {
						t.Errorf("check: %v\n%s", err, out)
					}
				} else {
					// The balancer's one bucket: B is limited by A's
					// requests, and the block list never matches.
					if bStatus != 429 || blocked == 403 {
						t.Errorf("the trap: client B %d (want 429: one bucket for all), listed client %d (want not blocked)", bStatus, blocked)
					}
					if err == nil || !strings.Contains(string(out), "rate_limit runs before real_ip") || !strings.Contains(string(out), "blocklist runs before real_ip") {
						t.Errorf("check did not catch the order trap: %v\n%s", err, out)
					}
				}
			}
		})
	}
}
