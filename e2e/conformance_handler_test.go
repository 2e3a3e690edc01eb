package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// trustedForConformance is set_real_ip_from in nginx and trusted_ips in
// Caddy, for every variant.
var trustedForConformance = []string{"127.0.0.1", "127.0.0.3", "10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "::1", "unix:"}

type variant struct {
	name      string
	header    string // real_ip_header
	recursive bool
}

var conformanceVariants = []variant{
	{"xrealip", "X-Real-IP", false},
	{"xrealip-rec", "X-Real-IP", true},
	{"xff", "X-Forwarded-For", false},
	{"xff-rec", "X-Forwarded-For", true},
	{"custom", "X-Client-IP", false},
	{"custom-rec", "X-Client-IP", true},
}

// endpoint is where one variant listens, on each side.
type endpoint struct {
	v4, v6, dual, unix string
}

type conformanceCase struct {
	variant string
	via     string // v4, v6, dual (IPv4 client on a dual-stack socket: an IPv4-mapped peer), unix
	src     string // source address for v4/dual
	headers []string
}

func conformanceCases() []conformanceCase {
	var cases []conformanceCase
	add := func(variant, via, src string, headers ...string) {
		cases = append(cases, conformanceCase{variant, via, src, headers})
	}
	xffHeaders := [][]string{
		{"X-Forwarded-For: 203.0.113.1"},
		{"X-Forwarded-For: 203.0.113.1, 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1, 198.51.100.2, 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: 10.0.0.2, 10.0.0.3"},
		{"X-Forwarded-For: 10.9.9.9", "X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: 10.0.0.2"},
		{"X-Forwarded-For: 10.0.0.5, 10.0.0.2"},
		{"X-Forwarded-For: 10.0.0.5", "X-Forwarded-For: 192.168.1.1, 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1:8080"},
		{"X-Forwarded-For: 203.0.113.1:8080, 10.0.0.2:9090"},
		{"X-Forwarded-For: [2001:db8::1]:443"},
		{"X-Forwarded-For: 2001:db9::1, 2001:db8::5"},
		{"X-Forwarded-For: [2001:db9::1]:443, [2001:db8::5]:80"},
		{"X-Forwarded-For: unknown"},
		{"X-Forwarded-For: 203.0.113.1, unknown"},
		{"X-Forwarded-For: unknown, 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1, unknown, 10.0.0.2"},
		{"X-Forwarded-For: unknown", "X-Forwarded-For: 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1,10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1, 10.0.0.2,"},
		{"X-Forwarded-For: 203.0.113.1,, 10.0.0.2"},
		{"X-Forwarded-For: 203.0.113.1, ::ffff:10.0.0.9"},
		{"X-Forwarded-For: ::ffff:203.0.113.1"},
		{"X-Forwarded-For: 203.0.113.1:0"},
		{"X-Forwarded-For: 203.0.113.1:65536"},
		{"X-Forwarded-For: 203.0.113.1:080"},
		{"X-Forwarded-For: [2001:db8::1]"},
		{"X-Forwarded-For: [2001:db8::1]:0, 10.0.0.2"},
		{"X-Forwarded-For: fe80::1%eth0"},
		{"X-Forwarded-For: _hidden, 10.0.0.2"},
		{`X-Forwarded-For: "203.0.113.1"`},
		{"X-Forwarded-For: 2001:db8::1:80"},
		{"X-Forwarded-For: 203.0.113.1;proto=https"},
		{"X-Real-IP: 203.0.113.77"},
		{"X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: "},
		{"X-Forwarded-For: ", "X-Forwarded-For: 10.0.0.2"},
		{"X-Forwarded-For: ,"},
		{"X-Forwarded-For: 203.0.113.1", "X-Forwarded-For: , 10.0.0.2"},
		{"x-forwarded-for: 203.0.113.1, 10.0.0.2"},
		nil,
	}
	for _, h := range xffHeaders {
		add("xff", "v4", "127.0.0.1", h...)
		add("xff-rec", "v4", "127.0.0.1", h...)
	}
	// Untrusted peers: nothing changes, whatever they send.
	add("xff", "v4", "127.0.0.2", "X-Forwarded-For: 203.0.113.1")
	add("xff-rec", "v4", "127.0.0.2", "X-Forwarded-For: 203.0.113.1, 10.0.0.2")
	add("xrealip", "v4", "127.0.0.2", "X-Real-IP: 203.0.113.1")
	add("custom-rec", "v4", "127.0.0.4", "X-Client-IP: 203.0.113.1")
	// A second trusted source.
	add("xff-rec", "v4", "127.0.0.3", "X-Forwarded-For: 203.0.113.1, 127.0.0.1")
	add("xff-rec", "v4", "127.0.0.3", "X-Forwarded-For: 127.0.0.2, 127.0.0.1")
	// IPv6 peer.
	add("xff", "v6", "", "X-Forwarded-For: 203.0.113.1")
	add("xff-rec", "v6", "", "X-Forwarded-For: 2001:db9::8, 2001:db8::9")
	add("xrealip", "v6", "", "X-Real-IP: [2001:db9::8]:8443")
	// IPv4-mapped peers (IPv4 clients on a dual-stack socket).
	add("xff", "dual", "127.0.0.1", "X-Forwarded-For: 203.0.113.1")
	add("xff-rec", "dual", "127.0.0.1", "X-Forwarded-For: 203.0.113.1, 10.0.0.2")
	add("xff", "dual", "127.0.0.2", "X-Forwarded-For: 203.0.113.1")
	// UNIX socket peers, trusted by "unix:".
	add("xff", "unix", "", "X-Forwarded-For: 203.0.113.1")
	add("xff-rec", "unix", "", "X-Forwarded-For: 203.0.113.1:7000, 10.0.0.2")
	add("xrealip", "unix", "", "X-Real-IP: 203.0.113.1")
	// X-Real-IP and another header: first line only, split the same way.
	single := [][]string{
		{"%s: 203.0.113.1"},
		{"%s: 203.0.113.1, 10.0.0.2"},
		{"%s: 203.0.113.1, 198.51.100.2"},
		{"%s: 203.0.113.1", "%s: 198.51.100.2"},
		{"%s: 10.0.0.2", "%s: 198.51.100.2"},
		{"%s: 203.0.113.1:5555"},
		{"%s: [2001:db9::1]:443"},
		{"%s: unknown"},
		{"%s: unknown, 10.0.0.2"},
		nil,
	}
	for _, v := range []struct{ name, header string }{{"xrealip", "X-Real-IP"}, {"custom", "X-Client-IP"}} {
		for _, tmpl := range single {
			var h []string
			for _, line := range tmpl {
				h = append(h, fmt.Sprintf(line, v.header))
			}
			add(v.name, "v4", "127.0.0.1", h...)
			add(v.name+"-rec", "v4", "127.0.0.1", h...)
		}
		// Header names are case-insensitive on the wire.
		add(v.name, "v4", "127.0.0.1", strings.ToLower(v.header)+": 198.51.100.77")
	}
	return cases
}

// explainPeerPort is the peer port given to caddy real-ip explain; an
// answer with it is the peer's own.
const explainPeerPort = 40000

// explainAnswer runs a case through `caddy real-ip explain`, with the
// variant's settings, the case's source address as the peer and the case's
// raw request on standard input, and normalises the client it prints.
func explainAnswer(t *testing.T, c conformanceCase) answer {
	return explainAnswerFrom(t, c, "")
}

// explainAnswerFrom is explainAnswer with the handler taken from the
// server of the case's variant in the JSON config file config (when not
// empty), as `caddy real-ip explain --config` replays the config that runs.
func explainAnswerFrom(t *testing.T, c conformanceCase, config string) answer {
	t.Helper()
	var v variant
	for _, cv := range conformanceVariants {
		if cv.name == c.variant {
			v = cv
		}
	}
	peer := "@"
	switch c.via {
	case "v4", "dual":
		peer = fmt.Sprintf("%s:%d", c.src, explainPeerPort)
	case "v6":
		peer = fmt.Sprintf("[::1]:%d", explainPeerPort)
	}
	args := []string{"real-ip", "explain", "--header", v.header, "--peer", peer}
	for _, ip := range trustedForConformance {
		args = append(args, "--trusted-ips", ip)
	}
	if v.recursive {
		args = append(args, "--recursive")
	}
	if config != "" {
		args = []string{"real-ip", "explain", "--config", config, "--server", v.name, "--peer", peer}
	}
	cmd := exec.Command(caddyBin, args...)
	cmd.Stdin = bytes.NewReader(request(c.headers))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	client, ok := strings.CutPrefix(last, "client: ")
	if !ok {
		t.Fatalf("explain's last line is %q", last)
	}
	client, _, _ = strings.Cut(client, " (source ")
	if client == "@" {
		return answer{"unix", "none"}
	}
	host, port, err := net.SplitHostPort(client)
	if err != nil {
		t.Fatalf("explain's client %q: %v", client, err)
	}
	if port == fmt.Sprint(explainPeerPort) {
		port = "peer"
	}
	return answer{host, port}
}

// answer is a client address as one server reported it, normalised so the
// two can be compared: the port is "peer" when it is the connection's own.
type answer struct{ addr, port string }

func normalise(body string, localPort int, via string) answer {
	addr, port, _ := strings.Cut(strings.TrimSpace(body), " ")
	switch {
	case addr == "unix:" || addr == "@":
		addr = "unix"
	default:
		// nginx shows an IPv4 client on a dual-stack socket as ::ffff:a.b.c.d,
		// Go as a.b.c.d: the same peer. And an IPv4-mapped header entry
		// is the IPv4 client here, deliberately (README, "Where this
		// differs"), where nginx keeps the mapped form: the same address.
		if a, err := netip.ParseAddr(addr); err == nil && a.Is4In6() {
			addr = a.Unmap().String()
		}
	}
	switch {
	case port == "" || port == "0":
		port = "0"
		if addr == "unix" {
			port = "none"
		}
	case port == fmt.Sprint(localPort):
		port = "peer"
	}
	return answer{addr, port}
}

func ask(t *testing.T, ep endpoint, c conformanceCase) answer {
	t.Helper()
	var conn net.Conn
	var err error
	switch c.via {
	case "v4":
		conn, err = dialFrom(c.src)(context.Background(), "tcp", ep.v4)
	case "v6":
		conn, err = dialFrom("::1")(context.Background(), "tcp", ep.v6)
	case "dual":
		_, port, _ := net.SplitHostPort(ep.dual)
		conn, err = dialFrom(c.src)(context.Background(), "tcp", "127.0.0.1:"+port)
	case "unix":
		conn, err = net.Dial("unix", ep.unix)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", c.via, err)
	}
	local := 0
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		local = a.Port
	}
	body, err := rawRequest(t, conn, c.headers)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return normalise(body, local, c.via)
}

// TestConformanceHandlerWithNginx runs every case against nginx's realip
// module and against Caddy's real_ip handler, configured alike, and asserts
// the same client address and port.
func TestConformanceHandlerWithNginx(t *testing.T) {
	dir := t.TempDir()
	caddy := startCaddy(t)
	ngx := map[string]endpoint{}
	cdy := map[string]endpoint{}
	var nginxServers, caddyServers []string
	var waits []string
	ports := freePorts(t, 6*len(conformanceVariants))
	for _, v := range conformanceVariants {
		var n, c endpoint
		for _, ep := range []*endpoint{&n, &c} {
			ep.v4 = fmt.Sprintf("127.0.0.1:%d", ports[0])
			ep.v6 = fmt.Sprintf("[::1]:%d", ports[1])
			ep.dual = fmt.Sprintf("[::]:%d", ports[2])
			ports = ports[3:]
		}
		n.unix = filepath.Join(dir, "nginx-"+v.name+".sock")
		c.unix = filepath.Join(dir, "caddy-"+v.name+".sock")
		ngx[v.name], cdy[v.name] = n, c
		waits = append(waits, n.v4, n.v6)

		var from []string
		for _, ip := range trustedForConformance {
			from = append(from, "set_real_ip_from "+ip+";")
		}
		rec := "off"
		if v.recursive {
			rec = "on"
		}
		nginxServers = append(nginxServers, fmt.Sprintf(`
server {
	listen %s;
	listen %s;
	listen %s ipv6only=off;
	listen unix:%s;
	%s
	real_ip_header %s;
	real_ip_recursive %s;
	location / { return 200 "$remote_addr $remote_port\n"; }
}`, n.v4, n.v6, n.dual, n.unix, strings.Join(from, " "), v.header, rec))

		trusted := `"` + strings.Join(trustedForConformance, `","`) + `"`
		caddyServers = append(caddyServers, fmt.Sprintf(`%q:{"listen":[%q,%q,%q,"unix/%s"],"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":[%s],"real_ip_header":%q,"real_ip_recursive":%v},
			{"handler":"static_response","body":"{http.request.remote.host} {http.request.remote.port}"}]}]}`,
			v.name, c.v4, c.v6, "tcp/"+c.dual, c.unix, trusted, v.header, v.recursive))
	}
	startNginx(t, indent(strings.Join(nginxServers, "\n"), "\t"), waits...)
	caddy.loadJSON(`{"http":{"servers":{` + strings.Join(caddyServers, ",") + `}}}`)
	// The same config as a file, for explain --config.
	configFile := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(configFile, []byte(`{"apps":{"http":{"servers":{`+strings.Join(caddyServers, ",")+`}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range conformanceVariants {
		waitUnix(t, ngx[v.name].unix)
	}

	cases := conformanceCases()
	changed := 0
	for i, c := range cases {
		name := fmt.Sprintf("%02d-%s-%s-%s-%s", i, c.variant, c.via, c.src, strings.Join(c.headers, "|"))
		t.Run(name, func(t *testing.T) {
			want := ask(t, ngx[c.variant], c)
			got := ask(t, cdy[c.variant], c)
			if got != want {
				t.Errorf("nginx says %v, Caddy says %v", want, got)
			}
			if ex := explainAnswer(t, c); ex != got {
				t.Errorf("caddy real-ip explain says %v, the handler %v", ex, got)
			}
			if ex := explainAnswerFrom(t, c, configFile); ex != got {
				t.Errorf("caddy real-ip explain --config says %v, the handler %v", ex, got)
			}
			if want.port != "peer" && want.port != "none" {
				changed++
			}
			t.Logf("%v", want)
		})
	}
	t.Logf("%d cases, %d of them with a client address taken from a header", len(cases), changed)
	if len(cases) < 40 || changed < 30 {
		t.Errorf("too few cases: %d, %d changing the address", len(cases), changed)
	}
}
