package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The crafted inputs an attacker would write into a ConfigMap, a kong.conf
// or the environment: each is refused with an error naming the key.
func TestImportRefusesInjection(t *testing.T) {
	manifest := func(name, key, value string) []byte {
		return fmt.Appendf(nil, "kind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  %s: %s\n", name, key, value)
	}
	cases := []struct {
		name     string
		manifest []byte
		want     string
	}{
		{"the issue's name", manifest(`"x)\n{\n\tadmin 0.0.0.0:2019\n}\n#"`, "use-forwarded-headers", `"true"`), "metadata.name has the control character U+000A"},
		{"a key with a newline", manifest("c", `"evil\n:2019 {\n}"`, `"x"`), `data key "evil\n:2019 {\n}" has the control character U+000A`},
		{"a value with a newline", manifest("c", "forwarded-for-header", `"X-Forwarded-For\n}\n:2019 {"`), "data.forwarded-for-header has the control character U+000A"},
		{"a carriage return", manifest("c", "proxy-real-ip-cidr", `"10.0.0.0/8\r"`), "U+000D"},
		{"a NUL", manifest("c", "x", `"\0"`), "U+0000"},
		{"a line separator", manifest("c", "x", "\"a\u2028b\""), "U+2028"},
		{"invalid UTF-8", manifest("c", "x", "\xff"), "cm.yaml: not a ConfigMap manifest"},
		{"a namespace", []byte("kind: ConfigMap\nmetadata:\n  name: c\n  namespace: \"a\\nb\"\n"), "metadata.namespace has the control character"},
		{"a header with a brace", manifest("c", "use-forwarded-headers", `"true"`+"\n  forwarded-for-header: \"{$X}\""), "forwarded-for-header"},
		{"an environment variable in a key", manifest("c", `"@2{$"`, `"0"`), "has '{$' at byte 2"},
		{"an environment variable in a value", manifest("c", "x", `"{$HOME}"`), "data.x has '{$'"},
		{"a duplicate key", manifest("c", "enable-real-ip", `"false"`+"\n  enable-real-ip: \"true\""), "data.enable-real-ip is given twice"},
	}
	for _, c := range cases {
		p, err := ingressNginxPlan(c.manifest, "cm.yaml", 80, 443, 10254)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			out := ""
			if p != nil {
				out = string(p.caddyfile())
			}
			t.Errorf("%s: %v, want an error with %q\n%s", c.name, err, c.want, out)
		}
	}

	kong := []struct {
		name string
		env  map[string]string
		conf string
		want string
	}{
		{"KONG_REAL_IP_RECURSIVE with a newline", map[string]string{"KONG_REAL_IP_RECURSIVE": "on\n}\n:2019 {\n\trespond owned"}, "", "real_ip_recursive has the control character U+000A"},
		{"KONG_PROXY_LISTEN with a newline", map[string]string{"KONG_PROXY_LISTEN": "0.0.0.0:8000\n:2019"}, "", "proxy_listen has the control character"},
		{"a host that is not a name", map[string]string{"KONG_PROXY_LISTEN": "{SECRET}:8000"}, "", "neither an IP address nor a host name"},
		{"a host that is an environment variable", map[string]string{"KONG_PROXY_LISTEN": "{$SECRET}:8000"}, "", "proxy_listen has '{$'"},
		{"a host with a brace", map[string]string{"KONG_PROXY_LISTEN": "a{:8000"}, "", "neither an IP address nor a host name"},
		{"kong.conf with a control character", nil, "real_ip_header = X-Real\x01IP\n", "kong.conf line 1: real_ip_header has the control character U+0001"},
		{"an environment variable in KONG_TRUSTED_IPS", map[string]string{"KONG_TRUSTED_IPS": "10.0.0.0/8,{$X"}, "", "trusted_ips has '{$'"},
		{"a header with a placeholder", map[string]string{"KONG_REAL_IP_HEADER": "{env.X}"}, "", "not a valid header name"},
	}
	for _, c := range kong {
		conf, err := readKongConf(strings.NewReader(c.conf))
		if err == nil {
			_, err = kongPlan(environOf(c.env), conf, "kong.conf")
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

// checkOutput adapts a plan's Caddyfile and checks that the config holds
// only what the importer means to write: the http app (and tls), servers
// on the plan's listen addresses, and no admin settings.
func checkOutput(t *testing.T, p *plan) {
	t.Helper()
	cf := p.caddyfile()
	js, err := adapt(cf)
	if err != nil {
		t.Fatalf("the output does not adapt: %v\n%s", err, cf)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		t.Fatal(err)
	}
	for k := range top {
		if k != "apps" {
			t.Fatalf("the output sets %q:\n%s", k, cf)
		}
	}
	_ = json.Unmarshal(js, &cfg)
	for app, raw := range cfg.Apps {
		switch app {
		case "http", "tls":
		case "pki":
			// skip_install_trust, and nothing else.
			var compact bytes.Buffer
			_ = json.Compact(&compact, raw)
			if got := compact.String(); got != `{"certificate_authorities":{"local":{"install_trust":false}}}` {
				t.Fatalf("the output's pki app: %s\n%s", got, cf)
			}
		default:
			t.Fatalf("the output configures the %q app:\n%s", app, cf)
		}
	}
	var http struct {
		Servers map[string]struct {
			Listen []string `json:"listen"`
		} `json:"servers"`
	}
	_ = json.Unmarshal(cfg.Apps["http"], &http)
	var want []string
	for _, l := range p.listeners {
		want = append(want, l.serverKey())
	}
	if p.probe != nil {
		want = append(want, fmt.Sprintf(":%d", p.probe.port))
	}
	for name, srv := range http.Servers {
		for _, addr := range srv.Listen {
			if !slices.Contains(want, addr) {
				t.Fatalf("server %s listens on %s, not one of the plan's %v:\n%s", name, addr, want, cf)
			}
		}
	}
	if len(http.Servers) > len(want) {
		t.Fatalf("%d servers for %d listeners:\n%s", len(http.Servers), len(p.listeners), cf)
	}
	// Every real_ip handler reads the header the plan names, letter for
	// letter: a name the lexer reads differently ("#..." is a comment) fails.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "real_ip" {
				if got, _ := v["real_ip_header"].(string); got != p.header && (got != "" || p.header != "X-Real-IP") {
					t.Fatalf("a real_ip handler reads %q, the plan says %q:\n%s", got, p.header, cf)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var all any
	_ = json.Unmarshal(js, &all)
	walk(all)
}

// FuzzImportIngressNginx feeds arbitrary ConfigMap names, keys and values
// to the importer: its output is refused, or adapts to a config with only
// the servers, listeners and settings the importer means to write.
func FuzzImportIngressNginx(f *testing.F) {
	f.Add("ingress-nginx-controller", "default", "use-forwarded-headers", "true", "forwarded-for-header", "X-Forwarded-For")
	f.Add("x)\n{\n\tadmin 0.0.0.0:2019\n}\n#", "ns", "use-proxy-protocol", "true", "proxy-real-ip-cidr", "10.0.0.0/8")
	f.Add("c", "n", "enable-real-ip", "true", "forwarded-for-header", "CF-Connecting-IP\n}\n:2019 {")
	f.Add("c", "n", "k\n}", "v", "proxy-protocol-header-timeout", "3s")
	f.Add("c", "n", "forwarded-for-header", "#0", "proxy-real-ip-cidr", "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, name, namespace, k1, v1, k2, v2 string) {
		// Quoted YAML strings carry any text, as a real manifest can.
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		manifest := fmt.Sprintf("kind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  %s: %s\n  %s: %s\n  use-forwarded-headers: \"true\"\n",
			q(name), q(namespace), q(k1), q(v1), q(k2), q(v2))
		p, err := ingressNginxPlan([]byte(manifest), "cm.yaml", 8080, 8443, 10254)
		if err != nil {
			return
		}
		checkOutput(t, p)
	})
}

// FuzzImportKong feeds arbitrary environment values to the Kong importer,
// with the same check.
func FuzzImportKong(f *testing.F) {
	f.Add("0.0.0.0:8000, 0.0.0.0:8443 ssl", "10.0.0.0/8", "X-Forwarded-For", "on")
	f.Add("0.0.0.0:8000 proxy_protocol", "", "proxy_protocol", "on\n}\n:2019 {")
	f.Add("kong.internal:8000", "10.0.0.1", "X-Real-IP", "off")
	f.Add("0.0.0.0:8000", "10.0.0.0/8", "#0", "on")
	f.Add("0.0.0.0:8000", "10.0.0.0/8", "`x`", "on")
	f.Fuzz(func(t *testing.T, listen, trusted, header, recursive string) {
		env := map[string]string{"KONG_PROXY_LISTEN": listen, "KONG_TRUSTED_IPS": trusted, "KONG_REAL_IP_HEADER": header, "KONG_REAL_IP_RECURSIVE": recursive}
		p, err := kongPlan(environOf(env), map[string]string{}, "kong.conf")
		if err != nil {
			return
		}
		checkOutput(t, p)
	})
}

// BenchmarkImportIngressNginx100kKeys: a ConfigMap of 100,000 keys (the
// issue measured 75 s before the linear reader; BENCHMARKS.md has today's).
func BenchmarkImportIngressNginx100kKeys(b *testing.B) {
	var m strings.Builder
	m.WriteString("kind: ConfigMap\nmetadata:\n  name: big\ndata:\n  use-forwarded-headers: \"true\"\n")
	for i := range 100_000 {
		fmt.Fprintf(&m, "  key-%d: \"value %d\"\n", i, i)
	}
	manifest := []byte(m.String())
	b.ResetTimer()
	for b.Loop() {
		p, err := ingressNginxPlan(manifest, "big.yaml", 80, 443, 10254)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := adapt(p.caddyfile()); err != nil {
			b.Fatal(err)
		}
	}
}
