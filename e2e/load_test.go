package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// The load harness: the built Caddy binary, one process, variants side by
// side in one run, driven over loopback. Compare ns/op between sub-benchmarks
// (ratios); absolute figures depend on the machine.
//
//	go test ./e2e -run '^$' -bench Load -benchtime 3s -count 5

// BenchmarkLoadClientIP: keep-alive requests carrying a 5-entry
// X-Forwarded-For from a trusted peer, answered with the client address,
// through (a) no client-IP processing, (b) Caddy's built-in trusted_proxies
// with client_ip_headers and trusted_proxies_strict (its equivalent of
// real_ip_recursive on), (c) the real_ip handler.
func BenchmarkLoadClientIP(b *testing.B) {
	c := startCaddy(b)
	ports := freePorts(b, 3)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	respond := func(body string) string {
		return fmt.Sprintf(`{"handler":"static_response","body":%q}`, body)
	}
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"none":{"listen":[%q],"routes":[{"handle":[%s]}]},
		"builtin":{"listen":[%q],
			"trusted_proxies":{"source":"static","ranges":["127.0.0.1/32","10.0.0.0/8","172.16.0.0/12"]},
			"client_ip_headers":["X-Forwarded-For"],"trusted_proxies_strict":1,
			"routes":[{"handle":[%s]}]},
		"real_ip":{"listen":[%q],"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8","172.16.0.0/12"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":true},
			%s]}]}}}}`,
		addr(0), respond("{http.request.remote.host}"),
		addr(1), respond("{http.vars.client_ip}"),
		addr(2), respond("{http.vars.client_ip}")))
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 203.0.113.7, 198.51.100.1, 10.1.1.1, 172.16.5.5, 10.2.2.2\r\n\r\n"
	for i, name := range []string{"none", "caddy_trusted_proxies", "real_ip"} {
		want := "198.51.100.1"
		if name == "none" {
			want = "127.0.0.1"
		}
		b.Run(name, func(b *testing.B) { keepAliveLoad(b, addr(i), req, want) })
	}
}

// keepAliveLoad sends req over one kept-alive connection per goroutine and
// checks every answer.
func keepAliveLoad(b *testing.B, addr, req, want string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for pb.Next() {
			if _, err := io.WriteString(conn, req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				b.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				b.Errorf("got %q, want %q", body, want)
				return
			}
		}
	})
}

// BenchmarkLoadProxyConnections: a new connection per request, each
// starting with an AWS NLB-shaped v2 header, through (a) no wrapper (no
// header sent), (b) Caddy's built-in proxy_protocol wrapper, (c) real_ip.
func BenchmarkLoadProxyConnections(b *testing.B) {
	c := startCaddy(b)
	ports := freePorts(b, 3)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	route := `"routes":[{"handle":[{"handler":"static_response","body":"{http.request.remote.host}"}]}]`
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{
		"none":{"listen":[%q],%s},
		"builtin":{"listen":[%q],"listener_wrappers":[{"wrapper":"proxy_protocol","allow":["127.0.0.1/32"],"fallback_policy":"reject"}],%s},
		"real_ip":{"listen":[%q],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],%s}}}}`,
		addr(0), route, addr(1), route, addr(2), route))
	header := awsHeader(b)
	for i, name := range []string{"none", "caddy_proxy_protocol", "real_ip"} {
		prefix, want := header, "203.0.113.9"
		if name == "none" {
			prefix, want = nil, "127.0.0.1"
		}
		b.Run(name, func(b *testing.B) { newConnLoad(b, addr(i), prefix, want) })
	}
}

func newConnLoad(b *testing.B, addr string, prefix []byte, want string) {
	msg := append(append([]byte(nil), prefix...), "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"...)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := &net.Dialer{}
		for pb.Next() {
			conn, err := d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := conn.Write(msg); err != nil {
				b.Error(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				b.Error(err)
				conn.Close()
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != want {
				b.Errorf("got %q, want %q", body, want)
			}
			// Reset, so that no socket is left in TIME_WAIT to slow down
			// the variants that run later.
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
}
