package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestConformanceProxyProtocolWithNginx sends every PROXY header vector to
// nginx (listen ... proxy_protocol, set_real_ip_from, real_ip_header
// proxy_protocol) and to Caddy (the real_ip listener wrapper and handler),
// from the same trusted address. Where the vector does not say otherwise,
// both must give the same client address, or both must close. Where it does
// (DESIGN.md's deliberate differences), both answers are asserted, so the
// README's list of differences stays true.
func TestConformanceProxyProtocolWithNginx(t *testing.T) {
	c := startCaddy(t)
	ports := freePorts(t, 2)
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	caddyAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	startNginx(t, fmt.Sprintf(`
	server {
		listen %s proxy_protocol;
		client_header_timeout 2s;
		set_real_ip_from 127.0.0.1;
		real_ip_header proxy_protocol;
		location / { return 200 "$remote_addr $remote_port\n"; }
	}`, nginxAddr), nginxAddr)
	c.loadJSON(`{"http":{"servers":{"pp":` + ppServer(caddyAddr, "") + `}}}`)

	var same, differ []string
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			ngx := exchange(t, "tcp", "127.0.0.1", nginxAddr, v.Data, 10*time.Second).String()
			cdy := exchange(t, "tcp", "127.0.0.1", caddyAddr, v.Data, 10*time.Second).String()
			wantNginx := v.Expect
			if v.Nginx != "" {
				wantNginx = v.Nginx
			}
			if ngx != wantNginx {
				t.Errorf("nginx: %s, the vector says %s", ngx, wantNginx)
			}
			if cdy != v.Expect {
				t.Errorf("caddy: %s, want %s", cdy, v.Expect)
			}
			line := fmt.Sprintf("%-45s nginx %-28s caddy %s", v.Name, ngx, cdy)
			if v.Nginx == "" {
				same = append(same, line)
			} else {
				differ = append(differ, line+"  ("+v.Why+")")
			}
		})
	}
	t.Logf("agree (%d):\n%s", len(same), strings.Join(same, "\n"))
	t.Logf("differ by design (%d):\n%s", len(differ), strings.Join(differ, "\n"))
}
