package command

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Values files merge as helm -f merges them (maps key by key, lists
// replaced, null removes), and --set goes over them with Helm's syntax.
func TestHelmValuesMergeAndSet(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	a := write("a.yaml", "proxy:\n  http:\n    parameters: [proxy_protocol, deferred]\n  annotations:\n    a: \"1\"\n    b: \"2\"\nenv:\n  trusted_ips: 10.0.0.0/8\n")
	b := write("b.yaml", "proxy:\n  http:\n    parameters: [proxy_protocol]\n  annotations:\n    b: null\n    c: \"3\"\n")
	hv, err := readHelmValues(kongChartDefaults, []string{a, b}, []string{
		`env.real_ip_header=proxy_protocol,proxy.http.containerPort=9000`,
		`proxy.annotations.service\.beta\.kubernetes\.io/aws-load-balancer-proxy-protocol=*`,
		`proxy.tls.parameters[1]=proxy_protocol`,
		`proxy.tls.enabled=false`,
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{
		"proxy.http.parameters":    []any{"proxy_protocol"},
		"proxy.http.containerPort": 9000,
		"proxy.http.servicePort":   80, // the chart's default stays
		"env.trusted_ips":          "10.0.0.0/8",
		"env.real_ip_header":       "proxy_protocol",
		"proxy.tls.parameters":     []any{"http2", "proxy_protocol"},
		"proxy.tls.enabled":        false,
	}
	for path, want := range checks {
		if got := hv.get(path); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	ann := hv.stringMap("proxy.annotations")
	if want := map[string]string{"a": "1", "c": "3", "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"}; !reflect.DeepEqual(ann, want) {
		t.Errorf("annotations %v, want %v", ann, want)
	}

	// The chart's environment from those values: [::] listens fold into
	// Caddy's dual-stack one, port_maps follow the service ports.
	c, err := readKongChart([]string{a, b}, []string{"env.real_ip_header=proxy_protocol"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.env["KONG_PROXY_LISTEN"]; got != "0.0.0.0:8000 proxy_protocol, [::]:8000 proxy_protocol, 0.0.0.0:8443 http2 ssl, [::]:8443 http2 ssl" {
		t.Errorf("KONG_PROXY_LISTEN %q", got)
	}
	if got := c.env["KONG_PORT_MAPS"]; got != "80:8000, 443:8443" {
		t.Errorf("KONG_PORT_MAPS %q", got)
	}
	p, err := kongPlanWithChart(nil, map[string]string{}, "", c)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.listeners) != 2 {
		t.Errorf("%d listeners, want 2 (the [::] entries fold into Caddy's dual-stack ones): %+v", len(p.listeners), p.listeners)
	}
	// The environment still wins over the chart.
	p, err = kongPlanWithChart([]string{"KONG_TRUSTED_IPS=192.0.2.0/24"}, map[string]string{}, "", c)
	if err != nil || strings.Join(p.trustedIPs, " ") != "192.0.2.0/24" {
		t.Errorf("environment over chart: %v %v", err, p)
	}

	for set, want := range map[string]string{
		"novalue":       "want key=value",
		"a[x]=1":        "a list index is a number",
		"env.x=a\x01b":  "control character",
		"env.x={$HOME}": "'{$'",
	} {
		if _, err := readHelmValues(kongChartDefaults, nil, []string{set}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %q: %v, want %q", set, err, want)
		}
	}
	bad := write("bad.yaml", "env:\n  trusted_ips: \"10.0.0.0/8\\n}\\n:2019 {\"\n")
	if _, err := readKongChart([]string{bad}, nil); err == nil || !strings.Contains(err.Error(), "env.trusted_ips has the control character U+000A") {
		t.Errorf("a values file with a newline in a value: %v", err)
	}
}
