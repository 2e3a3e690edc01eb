package e2e

import (
	"fmt"
	"testing"
)

// TestProxyHopCountsAsAHop: behind an L4 load balancer that sends PROXY
// headers, a client cannot spoof X-Forwarded-For. nginx judges
// set_real_ip_from against the load balancer (nginx ticket 1566) and
// believes the client's header; Caddy judges it against the PROXY source.
func TestProxyHopCountsAsAHop(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 2)
	nginxAddr, caddyAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	startNginx(t, fmt.Sprintf(`
	server {
		listen %s proxy_protocol;
		set_real_ip_from 127.0.0.1;
		set_real_ip_from 10.0.0.0/8;
		real_ip_header X-Forwarded-For;
		location / { return 200 "$remote_addr $remote_port\n"; }
	}`, nginxAddr), nginxAddr)
	c.loadJSON(fmt.Sprintf(`{"http":{"servers":{"s":{"listen":[%q],
		"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["127.0.0.1"]}],
		"routes":[{"handle":[
			{"handler":"real_ip","trusted_ips":["127.0.0.1","10.0.0.0/8"],"real_ip_header":"X-Forwarded-For"},
			{"handler":"static_response","body":%q}]}]}}}}`, caddyAddr, ppBody))

	spoof := []byte("PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n")
	ask := func(addr string, header []byte, xff string) string {
		t.Helper()
		return exchangeWithHeaders(t, addr, header, []string{"X-Forwarded-For: " + xff}).String()
	}
	// A client on the internet (203.0.113.9) sends a forged header.
	if got := ask(nginxAddr, spoof, "1.2.3.4"); got != "1.2.3.4:0" {
		t.Errorf("nginx: %s; expected it to believe the forged header", got)
	}
	if got := ask(caddyAddr, spoof, "1.2.3.4"); got != "203.0.113.9:5555" {
		t.Errorf("caddy: %s, want the PROXY source", got)
	}
	// An L7 proxy inside the network (10.0.0.7) behind the same balancer
	// is trusted, so its header is believed by both.
	inner := []byte("PROXY TCP4 10.0.0.7 10.0.0.1 6000 443\r\n")
	for name, addr := range map[string]string{"nginx": nginxAddr, "caddy": caddyAddr} {
		if got := ask(addr, inner, "198.51.100.4"); got != "198.51.100.4:0" {
			t.Errorf("%s, trusted inner proxy: %s", name, got)
		}
	}
}
