package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The address every spoofing attempt tries to plant.
const (
	forgedV4 = "192.0.2.66"
	forgedV6 = "2001:db8::66"
)

// spoofing is one attempt to plant an address.
type spoofing struct {
	name   string
	server string // key of the server it targets
	src    string // the attacker's connection source (127.0.0.2 is untrusted)
	prefix string // bytes before the request (PROXY headers)
	lines  []string
	want   string // the client Caddy must see
}

// rawFrom sends raw bytes from a loopback source address and reads the reply.
func rawFrom(t *testing.T, src, addr, raw string) reply {
	t.Helper()
	conn, err := dialFrom(src)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, raw)
	all, _ := io.ReadAll(conn)
	if len(all) == 0 {
		return reply{closed: true}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatalf("bad response %q: %v", all, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// TestSpoofingSuite: untrusted peers, and clients behind a trusted PROXY
// hop, try to plant 192.0.2.66 (or 2001:db8::66) every way we know. Each
// attempt checks what the access log, the remote_ip and client_ip matchers
// and reverse_proxy's upstream saw.
func TestSpoofingSuite(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 7)
	addr := map[string]string{}
	for i, name := range []string{"xff", "xrealip", "pp-xff", "pp-mode", "h2c", "tls", "cf"} {
		addr[name] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	c.loadCaddyfile(fmt.Sprintf(`{
	local_certs
	servers 127.0.0.1:%[3]d {
		listener_wrappers {
			real_ip 127.0.0.1
		}
	}
	servers 127.0.0.1:%[4]d {
		listener_wrappers {
			real_ip 127.0.0.1
		}
	}
	servers 127.0.0.1:%[5]d {
		protocols h1 h2c
	}
}

(observe) {
	log
	@forged_remote remote_ip %[9]s %[10]s
	@forged_client client_ip %[9]s %[10]s
	header @forged_remote X-Forged-Remote-Ip yes
	header @forged_client X-Forged-Client-Ip yes
	header X-Seen-Client {client_ip}
	reverse_proxy %[8]s
}

http://:%[1]d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
}

http://:%[2]d {
	bind 127.0.0.1
	real_ip 127.0.0.1
	import observe
}

http://:%[3]d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
}

http://:%[4]d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header proxy_protocol
	}
	import observe
}

http://:%[5]d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
}

https://localhost:%[6]d {
	bind 127.0.0.1
	tls internal
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	import observe
}

http://:%[7]d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header CF-Connecting-IP
	}
	import observe
}
`, ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], up, forgedV4, forgedV6))

	const lb, client = "127.0.0.1", "203.0.113.50" // a trusted balancer; a client behind it
	pp := "PROXY TCP4 " + client + " 10.0.0.1 40000 80\r\n"
	forgedPP := "PROXY TCP4 " + forgedV4 + " 10.0.0.1 40000 80\r\n"
	long := strings.Repeat("198.51.100.1, ", 800) // about 11 KB
	attempts := []spoofing{
		{"XFF from an untrusted peer", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: " + forgedV4}, "127.0.0.2"},
		{"x-forwarded-for in lower case", "xff", "127.0.0.2", "", []string{"x-forwarded-for: " + forgedV4}, "127.0.0.2"},
		{"X-FORWARDED-FOR in upper case", "xff", "127.0.0.2", "", []string{"X-FORWARDED-FOR: " + forgedV4}, "127.0.0.2"},
		{"several XFF lines", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: " + forgedV4, "X-Forwarded-For: 127.0.0.1"}, "127.0.0.2"},
		{"XFF naming a trusted hop", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: " + forgedV4 + ", 127.0.0.1"}, "127.0.0.2"},
		{"X-Real-IP to the XFF mode", "xff", "127.0.0.2", "", []string{"X-Real-IP: " + forgedV4}, "127.0.0.2"},
		{"Forwarded: for=", "xff", "127.0.0.2", "", []string{"Forwarded: for=" + forgedV4}, "127.0.0.2"},
		{"entry with a port", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: " + forgedV4 + ":443"}, "127.0.0.2"},
		{"bracketed IPv6 with a port", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: [" + forgedV6 + "]:443"}, "127.0.0.2"},
		{"IPv6 with a zone", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: fe80::66%eth0"}, "127.0.0.2"},
		{"::ffff: form", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: ::ffff:" + forgedV4}, "127.0.0.2"},
		{"obsolete line folding", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: 127.0.0.1,", " " + forgedV4}, "127.0.0.2"},
		{"tabs and odd whitespace", "xff", "127.0.0.2", "", []string{"X-Forwarded-For:\t " + forgedV4 + " \t"}, "127.0.0.2"},
		{"an overlong value", "xff", "127.0.0.2", "", []string{"X-Forwarded-For: " + long + forgedV4}, "127.0.0.2"},
		{"a trusted peer: forgery left of the client (recursive)", "xff", lb, "", []string{"X-Forwarded-For: " + forgedV4 + ", " + client}, client},
		{"a trusted peer: forgery on an earlier line", "xff", lb, "", []string{"X-Forwarded-For: " + forgedV4, "X-Forwarded-For: " + client + ":1234"}, client},
		{"a trusted peer: forgery behind an unparsable entry", "xff", lb, "", []string{"X-Forwarded-For: " + forgedV4 + ", unknown, " + client}, client},
		{"a trusted peer: forgery with IPv4-mapped trusted tail", "xff", lb, "", []string{"X-Forwarded-For: " + forgedV4 + ", " + client + ", ::ffff:127.0.0.1"}, client},
		{"X-Real-IP from an untrusted peer", "xrealip", "127.0.0.2", "", []string{"X-Real-IP: " + forgedV4}, "127.0.0.2"},
		{"x-real-ip in lower case", "xrealip", "127.0.0.2", "", []string{"x-real-ip: " + forgedV4}, "127.0.0.2"},
		{"X-Real-IP second line from a trusted peer", "xrealip", lb, "", []string{"X-Real-IP: " + client, "X-Real-IP: " + forgedV4}, client},
		{"CF-Connecting-IP from an untrusted peer", "cf", "127.0.0.2", "", []string{"CF-Connecting-IP: " + forgedV4}, "127.0.0.2"},
		{"PROXY header from an untrusted peer", "pp-xff", "127.0.0.2", forgedPP, nil, "127.0.0.2"},
		{"PROXY v2 header from an untrusted peer", "pp-mode", "127.0.0.2", string(awsHeader(t)), nil, "127.0.0.2"},
		{"PROXY then forged XFF (a hop counts)", "pp-xff", lb, pp, []string{"X-Forwarded-For: " + forgedV4}, client},
		{"PROXY then XFF naming the trusted balancer", "pp-xff", lb, pp, []string{"X-Forwarded-For: " + forgedV4 + ", 127.0.0.1"}, client},
		{"PROXY then X-Real-IP", "pp-xff", lb, pp, []string{"X-Real-IP: " + forgedV4}, client},
		{"proxy_protocol mode: PROXY then forged XFF", "pp-mode", lb, pp, []string{"X-Forwarded-For: " + forgedV4}, client},
		{"a second PROXY header inside the stream", "pp-mode", lb, pp + forgedPP, nil, ""},
		{"a PROXY header from the client through the balancer", "pp-xff", lb, pp + forgedPP, nil, ""},
	}
	if len(attempts) < 28 {
		t.Fatalf("only %d attempts", len(attempts))
	}
	for i, a := range attempts {
		id := fmt.Sprintf("spoof-%02d", i)
		var b strings.Builder
		b.WriteString(a.prefix)
		fmt.Fprintf(&b, "GET /%s HTTP/1.1\r\nHost: localhost\r\nX-Test-Id: %s\r\nConnection: close\r\n", id, id)
		for _, l := range a.lines {
			b.WriteString(l + "\r\n")
		}
		b.WriteString("\r\n")
		r := rawFrom(t, a.src, addr[a.server], b.String())
		// From the trusted balancer the incoming chain is kept, forged
		// entries left of the client included (upstreams read it from the
		// right; a chain without them is issue 9's trusted_chain).
		checkSpoofing(t, c, id, a.name, r, a.want, a.src == lb && a.prefix == "")
	}

	// HTTP/2: h2c with prior knowledge and h2 over TLS, from an untrusted
	// peer, with forged headers.
	h2c := &http.Transport{Protocols: new(http.Protocols), DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialFrom("127.0.0.2")(ctx, "tcp", addr["h2c"])
	}}
	h2c.Protocols.SetUnencryptedHTTP2(true) // prior knowledge, no upgrade
	h2 := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialFrom("127.0.0.2")(ctx, "tcp", addr["tls"])
	}, TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}, ForceAttemptHTTP2: true}
	for i, v := range []struct {
		name string
		rt   http.RoundTripper
		url  string
	}{
		{"h2c (prior knowledge) with forged XFF", h2c, "http://localhost/"},
		{"HTTP/2 over TLS with forged XFF", h2, "https://localhost/"},
	} {
		id := fmt.Sprintf("spoof-h2-%d", i)
		resp, body := getWhileIssuing(t, &http.Client{Transport: v.rt, Timeout: 10 * time.Second},
			newGet(v.url+id, "X-Test-Id: "+id, "X-Forwarded-For: "+forgedV4, "x-forwarded-for: "+forgedV4+", 127.0.0.1"))
		if resp.ProtoMajor != 2 {
			t.Errorf("%s: spoken over %s", v.name, resp.Proto)
		}
		checkSpoofing(t, c, id, v.name, reply{status: resp.StatusCode, header: resp.Header, body: string(body)}, "127.0.0.2", false)
	}
}

// checkSpoofing asserts one attempt's outcome: want "" means the connection
// must be refused (no 200); otherwise the client Caddy saw, logged, matched
// and sent upstream must be want, and the forged address nowhere (but in an
// incoming chain a trusted peer sent, left of the client, when chainKept).
func checkSpoofing(t *testing.T, c *caddyProc, id, name string, r reply, want string, chainKept bool) {
	t.Helper()
	if want == "" {
		if !r.closed && r.status == 200 {
			t.Errorf("%s (%s): served: %+v", name, id, r)
		}
		t.Logf("%-60s refused (closed %v, status %d)", name, r.closed, r.status)
		return
	}
	if r.closed || r.status != 200 {
		t.Errorf("%s (%s): %+v", name, id, r)
		return
	}
	var upstream http.Header
	if err := json.Unmarshal([]byte(r.body), &upstream); err != nil {
		t.Errorf("%s: upstream %q", name, r.body)
		return
	}
	logged := ""
	for deadline := time.Now().Add(3 * time.Second); logged == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, line := range strings.Split(c.logs.String(), "\n") {
			if strings.Contains(line, `"X-Test-Id":["`+id+`"]`) {
				var entry struct {
					Request struct {
						ClientIP string `json:"client_ip"`
					} `json:"request"`
				}
				_ = json.Unmarshal([]byte(line), &entry)
				logged = entry.Request.ClientIP
			}
		}
	}
	xff := strings.Join(upstream.Values("X-Forwarded-For"), ", ")
	switch {
	case r.header.Get("X-Seen-Client") != want:
		t.Errorf("%s: {client_ip} %q, want %q", name, r.header.Get("X-Seen-Client"), want)
	case r.header.Get("X-Forged-Remote-Ip") != "" || r.header.Get("X-Forged-Client-Ip") != "":
		t.Errorf("%s: a remote_ip or client_ip matcher saw the forged address", name)
	case logged != want:
		t.Errorf("%s: access log client_ip %q, want %q", name, logged, want)
	case !chainKept && (strings.Contains(xff, forgedV4) || strings.Contains(xff, forgedV6)):
		t.Errorf("%s: the forged address went upstream: X-Forwarded-For %q", name, xff)
	case !strings.HasSuffix(xff, want):
		t.Errorf("%s: upstream X-Forwarded-For %q does not end with %s", name, xff, want)
	}
	t.Logf("%-60s client %s (log %s), upstream X-Forwarded-For %q", name, want, logged, xff)
}
