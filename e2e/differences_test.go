package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestDocumentedDifferencesFromNginx pins down, against nginx itself, each
// place where the README says the real_ip handler deliberately answers
// differently: both answers are asserted, so the README stays true.
func TestDocumentedDifferencesFromNginx(t *testing.T) {
	caddy := startCaddy(t)
	ports := freePorts(t, 4)
	nginxXFF, nginxLower := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	caddyXFF, caddyLower := fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])
	startNginx(t, fmt.Sprintf(`
	server {
		listen %s;
		set_real_ip_from 127.0.0.1;
		real_ip_header X-Forwarded-For;
		real_ip_recursive on;
		location / { return 200 "$remote_addr $remote_port\n"; }
	}
	server {
		listen %s;
		set_real_ip_from 127.0.0.1;
		real_ip_header x-forwarded-for;
		location / { return 200 "$remote_addr $remote_port\n"; }
	}`, nginxXFF, nginxLower), nginxXFF, nginxLower)
	caddy.loadCaddyfile(fmt.Sprintf(`
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	respond "{remote_host} {http.request.remote.port}"
}
http://localhost:%d {
	bind 127.0.0.1
	real_ip 127.0.0.1 {
		real_ip_header x-forwarded-for
	}
	respond "{remote_host} {http.request.remote.port}"
}`, ports[2], ports[3]))

	cases := []struct {
		why               string
		nginxAt, caddyAt  string
		headers           []string
		wantNginx, wantCd string
	}{
		{"IPv4 with leading zeros: nginx reads 010.0.0.1 as 10.0.0.1, others as octal 8.0.0.1; Caddy refuses it",
			nginxXFF, caddyXFF, []string{"X-Forwarded-For: 010.0.0.1"}, "10.0.0.1", "127.0.0.1"},
		{"IPv4 with an empty octet: nginx reads 1..2.3 as 1.0.2.3; Caddy refuses it",
			nginxXFF, caddyXFF, []string{"X-Forwarded-For: 1..2.3"}, "1.0.2.3", "127.0.0.1"},
		{"real_ip_header in lower case: nginx treats x-forwarded-for as a one-line header (first line); Caddy matches names case-insensitively (every line, last one counts)",
			nginxLower, caddyLower, []string{"X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 198.51.100.2"}, "198.51.100.1", "198.51.100.2"},
	}
	for _, c := range cases {
		t.Run(c.why, func(t *testing.T) {
			ngx, _ := getFrom(t, "127.0.0.1", c.nginxAt, c.headers)
			cdy, _ := getFrom(t, "127.0.0.1", c.caddyAt, c.headers)
			ngxAddr, _, _ := strings.Cut(ngx, " ")
			cdyAddr, _, _ := strings.Cut(cdy, " ")
			if ngxAddr != c.wantNginx {
				t.Errorf("nginx: %q, the README says %q", ngx, c.wantNginx)
			}
			if cdyAddr != c.wantCd {
				t.Errorf("caddy: %q, want %q", cdy, c.wantCd)
			}
		})
	}
}
