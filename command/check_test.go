package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// check runs caddy real-ip check on a Caddyfile (or JSON with name *.json)
// and returns its output and whether it failed.
func check(t *testing.T, name, config string) (string, bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runImport(t, checkCommand(), "--config", path)
	if err != nil && err != errMisjudges {
		t.Fatalf("check: %v\n%s", err, out)
	}
	return out, err == errMisjudges
}

func TestCheckFindings(t *testing.T) {
	for _, c := range []struct {
		name, file, config string
		misjudges          bool
		want               []string
	}{
		{"another directive ordered first", "Caddyfile", "{\n\torder header first\n}\n:8080 {\n\treal_ip 10.0.0.0/8\n\theader X-Seen {remote_host}\n}\n", true,
			[]string{"error: server srv0 (:8080), route 0, handler 0 (headers): headers runs before real_ip", "order real_ip first"}},
		{"the fix: order real_ip first last", "Caddyfile", "{\n\torder header first\n\torder real_ip first\n}\n:8080 {\n\treal_ip 10.0.0.0/8\n\theader X-Seen {remote_host}\n}\n", false,
			[]string{"nothing found"}},
		{"a plugin's handler first (JSON)", "c.json", `{"apps":{"http":{"servers":{"web":{"listen":[":443"],"routes":[{"handle":[{"handler":"rate_limit"},{"handler":"subroute","routes":[{"handle":[{"handler":"crowdsec"}]}]},{"handler":"real_ip","trusted_ips":["10.0.0.0/8"]}]}]}}}}}`, true,
			[]string{"handler 0 (rate_limit): rate_limit runs before real_ip", "handler 1 (subroute): route 0, handler 0 (crowdsec): crowdsec runs before real_ip"}},
		{"a plugin first, but the wrapper made the client already (JSON)", "c.json", `{"apps":{"http":{"servers":{"web":{"listen":["127.0.0.1:443"],"listener_wrappers":[{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"]}],"routes":[{"handle":[{"handler":"rate_limit"},{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_header":"proxy_protocol"}]}]}}}}}`, false,
			[]string{"nothing found"}},
		{"caddy-l4 before the wrapper (JSON)", "c.json", `{"apps":{"http":{"servers":{"web":{"listen":[":443"],"listener_wrappers":[{"wrapper":"layer4"},{"wrapper":"real_ip","trusted_ips":["10.0.0.0/8"]},{"wrapper":"tls"}],"routes":[{"handle":[{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_header":"proxy_protocol"}]}]}}}}}`, true,
			[]string{"listener wrapper 1 (real_ip): it comes after layer4"}},
		{"tls before the wrapper", "Caddyfile", "{\n\tservers :8443 {\n\t\tlistener_wrappers {\n\t\t\ttls\n\t\t\treal_ip 10.0.0.0/8\n\t\t}\n\t}\n}\nhttps://localhost:8443 {\n\ttls internal\n\trespond ok\n}\n:8081 {\n\trespond ok\n}\n", true,
			[]string{"it comes after tls"}},
		{"placeholders without the handler", "Caddyfile", "{\n\tservers :8080 {\n\t\tlistener_wrappers {\n\t\t\treal_ip 10.0.0.0/8\n\t\t}\n\t}\n}\n:8080 {\n\treverse_proxy app:8080 {\n\t\theader_up X-Forwarded-For {http.real_ip.trusted_chain}\n\t}\n}\n:8081 {\n\trespond ok\n}\n", true,
			[]string{"uses {http.real_ip.trusted_chain}, but no real_ip handler runs on this server"}},
		{"a servers key that matches nothing", "Caddyfile", "{\n\tservers :8443 {\n\t\tlistener_wrappers {\n\t\t\treal_ip 10.0.0.0/8\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n", true,
			[]string{"the global servers :8443 block: no server listens on :8443"}},
		{"trust of everything on a public port", "Caddyfile", ":8080 {\n\treal_ip 0.0.0.0/0 ::/0 {\n\t\treal_ip_header X-Forwarded-For\n\t}\n}\n", false,
			[]string{"warning:", "cover every address"}},
		{"trust of everything on loopback", "Caddyfile", "http://localhost:8080 {\n\tbind 127.0.0.1\n\treal_ip 0.0.0.0/0 ::/0\n}\n", false,
			[]string{"nothing found"}},
		{"a CDN header believed from nodes", "Caddyfile", ":8080 {\n\treal_ip 10.0.0.0/8 {\n\t\treal_ip_header CF-Connecting-IP\n\t}\n}\n", false,
			[]string{"CF-Connecting-IP is believed from private addresses", "externalTrafficPolicy: Local"}},
		{"every port wrapped", "Caddyfile", "{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\treal_ip 10.0.0.0/8\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n:8081 {\n\trespond /healthz 200\n}\n", false,
			[]string{"every server: each has the real_ip listener wrapper"}},
	} {
		out, misjudges := check(t, c.file, c.config)
		if misjudges != c.misjudges {
			t.Errorf("%s: misjudges %v, want %v\n%s", c.name, misjudges, c.misjudges, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, w, out)
			}
		}
	}
}

// The README's and examples' configs are clean.
func TestCheckExamplesAreClean(t *testing.T) {
	files := []string{"../examples/Caddyfile", "../examples/proxy-protocol.Caddyfile"}
	dirs, _ := filepath.Glob("../examples/kubernetes/*/caddy.yaml")
	for _, f := range dirs {
		data, _ := os.ReadFile(f)
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		for {
			var doc struct {
				Kind string            `yaml:"kind"`
				Data map[string]string `yaml:"data"`
			}
			if dec.Decode(&doc) != nil {
				break
			}
			if doc.Kind == "ConfigMap" {
				path := filepath.Join(t.TempDir(), "Caddyfile")
				_ = os.WriteFile(path, []byte(doc.Data["Caddyfile"]), 0o644)
				files = append(files, path)
				t.Logf("%s: its ConfigMap's Caddyfile", f)
			}
		}
	}
	for _, f := range files {
		out, err := runImport(t, checkCommand(), "--config", f)
		if err != nil || !strings.Contains(out, "nothing found") {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}
