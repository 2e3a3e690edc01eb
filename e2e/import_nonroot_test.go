package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// The imports' output runs where the source ran: as a non-root user (Kong
// and the controller run as one), on exactly the source's ports, touching
// no trust store, without the on-demand TLS warning; the probe port
// answers without a PROXY header; and the upstream gets the source's
// headers. Each case runs in a namespace of its own (a "pod", with a
// balancer in front at 198.51.100.1) so that the listening sockets can be
// read off whole.
func TestImportOutputRunsAsNonRoot(t *testing.T) {
	requireNetns(t)
	cases := []struct {
		name      string
		args      []string
		env       []string
		configMap string
		ports     []int // what the output must listen on, and nothing else
		probe     string
		check     func(t *testing.T, pod *importPod)
	}{
		{
			name: "kong, NLB with PROXY v2, status port, port_maps",
			args: []string{"real-ip", "import", "kong", "--upstream", "http://127.0.0.1:9000"},
			env: []string{"KONG_PROXY_LISTEN=0.0.0.0:8000 proxy_protocol, 0.0.0.0:8443 http2 ssl proxy_protocol",
				"KONG_TRUSTED_IPS=198.51.100.0/24", "KONG_REAL_IP_HEADER=proxy_protocol", "KONG_STATUS_LISTEN=0.0.0.0:8100",
				"KONG_PORT_MAPS=80:8000, 443:8443", "KONG_ADMIN_LISTEN=off"},
			ports: []int{8000, 8443, 8100},
			probe: "8100/status/ready",
			check: func(t *testing.T, pod *importPod) {
				h := pod.upstream(t, 8000, false, "")
				if h.Get("X-Real-Ip") != "203.0.113.9" || h.Get("X-Forwarded-For") != "203.0.113.9" || h.Get("X-Forwarded-Port") != "80" {
					t.Errorf("HTTP: upstream got %v (want the PROXY source, and X-Forwarded-Port 80 from port_maps)", h)
				}
				h = pod.upstream(t, 8443, true, "")
				if h.Get("X-Real-Ip") != "203.0.113.9" || h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Port") != "443" {
					t.Errorf("HTTPS: upstream got %v (want the PROXY source, https, 443)", h)
				}
			},
		},
		{
			name: "ingress-nginx, forwarded headers without PROXY, full X-Forwarded-For",
			args: []string{"real-ip", "import", "ingress-nginx", "--http-port", "8080", "--https-port", "8443", "--upstream", "http://127.0.0.1:9000"},
			configMap: "  use-forwarded-headers: \"true\"\n  compute-full-forwarded-for: \"true\"\n" +
				"  proxy-real-ip-cidr: \"198.51.100.0/24\"\n",
			ports: []int{8080, 8443, 10254},
			probe: "10254/healthz",
			check: func(t *testing.T, pod *importPod) {
				// Without the PROXY protocol: the incoming header, then
				// $realip_remote_addr (the balancer that connected).
				pod.noProxy = true
				h := pod.upstream(t, 8080, false, "X-Forwarded-For: 192.0.2.7, 203.0.113.9")
				if h.Get("X-Forwarded-For") != "192.0.2.7, 203.0.113.9, 198.51.100.1" || h.Get("X-Real-Ip") != "203.0.113.9" {
					t.Errorf("HTTP: upstream got %v (want X-Forwarded-For 192.0.2.7, 203.0.113.9, 198.51.100.1 and X-Real-IP 203.0.113.9)", h)
				}
			},
		},
		{
			name: "ingress-nginx, PROXY and forwarded headers, full X-Forwarded-For",
			args: []string{"real-ip", "import", "ingress-nginx", "--http-port", "8080", "--https-port", "8443", "--upstream", "http://127.0.0.1:9000"},
			configMap: "  use-proxy-protocol: \"true\"\n  use-forwarded-headers: \"true\"\n  compute-full-forwarded-for: \"true\"\n" +
				"  proxy-real-ip-cidr: \"198.51.100.0/24\"\n",
			ports: []int{8080, 8443, 10254},
			probe: "10254/healthz",
			check: func(t *testing.T, pod *importPod) {
				// The controller's $full_x_forwarded_for with the PROXY
				// protocol: the incoming header, then the PROXY address.
				h := pod.upstream(t, 8080, false, "X-Forwarded-For: 192.0.2.7")
				if h.Get("X-Forwarded-For") != "192.0.2.7, 203.0.113.9" || h.Get("X-Real-Ip") != "203.0.113.9" {
					t.Errorf("HTTP: upstream got %v (want X-Forwarded-For 192.0.2.7, 203.0.113.9 and X-Real-IP 203.0.113.9)", h)
				}
				h = pod.upstream(t, 8443, true, "")
				if h.Get("X-Forwarded-For") != "203.0.113.9" || h.Get("X-Forwarded-Proto") != "https" {
					t.Errorf("HTTPS: upstream got %v", h)
				}
			},
		},
	}
	// Every golden made from chart values, too: it starts as nobody, binds
	// exactly the ports its Caddyfile names, and answers its probe.
	for _, file := range helmGoldens(t) {
		kind := "kong"
		if strings.Contains(file, "ingress-nginx") {
			kind = "ingress-nginx"
		}
		cases = append(cases, struct {
			name      string
			args      []string
			env       []string
			configMap string
			ports     []int
			probe     string
			check     func(t *testing.T, pod *importPod)
		}{name: "helm values " + filepath.Base(file) + " (" + kind + ")", args: []string{"real-ip", "import", kind, "--helm-values", file,
			"--upstream", "http://127.0.0.1:9000"}, check: func(*testing.T, *importPod) {}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := c.args
			if c.configMap != "" {
				cm := filepath.Join(dir, "configmap.yaml")
				if err := os.WriteFile(cm, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ingress-nginx-controller\ndata:\n"+c.configMap), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--configmap", cm)
			}
			cf := caddyCommand(t, c.env, args...)
			if c.ports == nil {
				// What the generated Caddyfile itself says it listens on.
				c.ports, c.probe = caddyfilePorts(cf)
			}
			pod := startImportPod(t, dir, cf)

			// Only the source's ports, and Caddy's admin endpoint on
			// loopback.
			got := pod.listening(t)
			want := slices.Clone(c.ports)
			want = append(want, 2019)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("listening on %v, want %v (the source's ports and the admin endpoint)\n%s", got, want, cf)
			}
			if c.probe == "" {
				t.Fatalf("no probe server in the output:\n%s", cf)
			}
			port, path, _ := strings.Cut(c.probe, "/")
			if r := sendRaw(t, pod.lb, pod.ip+":"+port, "GET /"+path+" HTTP/1.1\r\nHost: "+pod.ip+"\r\nConnection: close\r\n\r\n"); r.status != 200 {
				t.Errorf("kubelet probe %s: %+v", c.probe, r)
			}
			c.check(t, pod)
			logs := pod.logs.String()
			for _, bad := range []string{"VULNERABLE", "permission denied", "installing root certificate", "on-demand", "\"level\":\"error\""} {
				if strings.Contains(logs, bad) {
					t.Errorf("Caddy's log has %q:\n%s", bad, logs)
				}
			}
			if strings.Contains(cf, "tls internal") && !strings.Contains(logs, "trust store installation disabled") {
				t.Errorf("Caddy did not say that it leaves the trust store alone:\n%s", logs)
			}
		})
	}
}

type importPod struct {
	noProxy  bool // the balancer sends no PROXY header (an L7 balancer)
	lab      *netnsLab
	lb, pod  string
	ip       string
	logs     *lockedBuffer
	balancer string
}

// startImportPod runs caddyfile as user nobody in a pod namespace linked to
// a balancer namespace, with an echo upstream on 127.0.0.1:9000.
func startImportPod(t *testing.T, dir, caddyfile string) *importPod {
	t.Helper()
	lab := newNetnsLab(t)
	p := &importPod{lab: lab, ip: "198.51.100.2", balancer: "198.51.100.1"}
	p.lb = lab.ns("lb", false)
	p.pod = lab.ns("pod", false)
	lab.link(p.lb, p.balancer+"/24", p.pod, p.ip+"/24")

	var echo net.Listener
	if err := inNetns(p.pod, func() error {
		var err error
		echo, err = net.Listen("tcp", "127.0.0.1:9000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = json.NewEncoder(w).Encode(r.Header) })}
	go func() { _ = srv.Serve(echo) }()
	t.Cleanup(func() { _ = srv.Close() })

	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	// nobody must reach the binary, the Caddyfile and its home.
	for _, d := range []string{dir, home} {
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(filepath.Dir(caddyBin), 0o755)
	// Ports below 1024 as the generated Deployment allows them to a
	// non-root process: the pod sysctl ip_unprivileged_port_start.
	if ports, _ := caddyfilePorts(caddyfile); slices.ContainsFunc(ports, func(n int) bool { return n < 1024 }) {
		lab.in(p.pod, "sysctl", "-qw", "net.ipv4.ip_unprivileged_port_start=0")
	}
	p.logs = lab.start(p.pod, []string{"HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home},
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if strings.Contains(p.logs.String(), "serving initial configuration") {
			break
		}
		if time.Now().After(deadline) || strings.Contains(p.logs.String(), "Error:") {
			t.Fatalf("caddy (as nobody) did not start:\n%s\n%s", p.logs.String(), caddyfile)
		}
	}
	return p
}

// listening returns the TCP ports something listens on in the pod.
func (p *importPod) listening(t *testing.T) []int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.pod, "ss", "-Hltn").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		local := fields[3]
		host, port, _ := net.SplitHostPort(local)
		var n int
		fmt.Sscan(port, &n)
		if n == 9000 && host == "127.0.0.1" {
			continue // the test's echo upstream
		}
		if !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	slices.Sort(ports)
	return ports
}

// upstream sends a PROXY v2 header from the balancer (client
// 203.0.113.9), then a request (over TLS with tls), and returns what the
// echo upstream received.
func (p *importPod) upstream(t *testing.T, port int, withTLS bool, header string) http.Header {
	t.Helper()
	addr := fmt.Sprintf("%s:%d", p.ip, port)
	ppHeader := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 5555}, &net.TCPAddr{IP: net.ParseIP(p.ip), Port: port})
	pp, err := ppHeader.Format()
	if err != nil {
		t.Fatal(err)
	}
	if p.noProxy {
		pp = nil
	}
	if !withTLS {
		if header != "" {
			header += "\r\n"
		}
		r := sendRaw(t, p.lb, addr, string(pp)+"GET /x HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n"+header+"\r\n")
		if r.status != 200 {
			t.Fatalf("%s: %+v", addr, r)
		}
		var h http.Header
		_ = json.Unmarshal([]byte(r.body), &h)
		return h
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "shop.example"}, ForceAttemptHTTP2: true}
	tr.DialContext = func(_ context.Context, _, _ string) (net.Conn, error) {
		conn, err := dialIn(p.lb, addr)
		if err == nil {
			_, err = conn.Write(pp)
		}
		return conn, err
	}
	defer tr.CloseIdleConnections()
	_, body := getWhileIssuing(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, newGet("https://shop.example/x"))
	var h http.Header
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return h
}

// helmGoldens are the chart values files the import goldens are made from.
func helmGoldens(t *testing.T) []string {
	t.Helper()
	kong, _ := filepath.Glob("../testdata/import/kong-helm/*.yaml")
	nginx, _ := filepath.Glob("../testdata/import/ingress-nginx-helm/*.yaml")
	if len(kong) < 3 || len(nginx) < 2 {
		t.Fatalf("chart values goldens: %d of Kong's, %d of ingress-nginx's", len(kong), len(nginx))
	}
	return append(kong, nginx...)
}

var siteAddress = regexp.MustCompile(`(?m)^https?://:(\d+)`)

// caddyfilePorts reads the ports of a generated Caddyfile's sites, and its
// probe ("port/path": the last site, the probe server, with its first
// respond path).
func caddyfilePorts(cf string) ([]int, string) {
	var ports []int
	for _, m := range siteAddress.FindAllStringSubmatch(cf, -1) {
		var n int
		fmt.Sscan(m[1], &n)
		if !slices.Contains(ports, n) {
			ports = append(ports, n)
		}
	}
	probe := ""
	if m := regexp.MustCompile(`(?m)^http://:(\d+) \{\n\trespond (\S+) 200`).FindStringSubmatch(cf); m != nil {
		probe = m[1] + m[2]
	}
	return ports, probe
}
