package command

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// runImport runs an import command as the CLI does, with args.
func runImport(t *testing.T, c *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&errOut)
	c.SetArgs(args)
	err := c.Execute()
	return out.String() + errOut.String(), err
}

// --output-dir writes the Caddyfile and manifests whose Deployment runs it
// as non-root on a read-only root filesystem, probes the probe server, and
// names its ports as the Service targets them.
func TestOutputDirManifests(t *testing.T) {
	for _, c := range []struct {
		cmd      *cobra.Command
		args     []string
		probe    string
		lowPorts bool
		service  map[string]string // Service port name → target container port
		policy   string
	}{
		{kongCommand(), []string{"--helm-values", "../testdata/import/kong-helm/aws-nlb-proxy-protocol.yaml"}, "/status/ready", false,
			map[string]string{"kong-proxy": "8000", "kong-proxy-tls": "8443"}, ""},
		{ingressNginxCommand(), []string{"--helm-values", "../testdata/import/ingress-nginx-helm/aws-nlb-proxy-protocol.yaml"}, "/healthz", true,
			map[string]string{"http": "80", "https": "443"}, ""},
		{ingressNginxCommand(), []string{"--helm-values", "../testdata/import/ingress-nginx-helm/etp-local.yaml"}, "/healthz", false,
			map[string]string{"http": "8080", "https": "8443"}, "Local"},
	} {
		dir := t.TempDir()
		if out, err := runImport(t, c.cmd, append(c.args, "--output-dir", dir)...); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		cf, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
		if err != nil {
			t.Fatal(err)
		}
		loads(t, cf)
		data, err := os.ReadFile(filepath.Join(dir, "caddy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objects := map[string]map[string]any{}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o map[string]any
			if err := dec.Decode(&o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			objects[o["kind"].(string)] = o
		}
		for _, kind := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
			if objects[kind] == nil {
				t.Fatalf("%v: no %s in\n%s", c.args, kind, data)
			}
		}
		if got := objects["ConfigMap"]["data"].(map[string]any)["Caddyfile"]; got != string(cf) {
			t.Errorf("%v: the ConfigMap's Caddyfile differs from the file", c.args)
		}
		podSpec := objects["Deployment"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		ctr := podSpec["containers"].([]any)[0].(map[string]any)
		sc := ctr["securityContext"].(map[string]any)
		if sc["runAsNonRoot"] != true || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
			t.Errorf("%v: container securityContext %v", c.args, sc)
		}
		_, hasSysctl := podSpec["securityContext"].(map[string]any)["sysctls"]
		if hasSysctl != c.lowPorts {
			t.Errorf("%v: ip_unprivileged_port_start sysctl %v, want %v (ports below 1024: %v)", c.args, hasSysctl, c.lowPorts, c.lowPorts)
		}
		ready := ctr["readinessProbe"].(map[string]any)["httpGet"].(map[string]any)
		if ready["path"] != c.probe || ready["port"] != "probe" {
			t.Errorf("%v: readiness probe %v", c.args, ready)
		}
		ports := map[string]string{}
		for _, p := range ctr["ports"].([]any) {
			p := p.(map[string]any)
			ports[p["name"].(string)] = strings.TrimSpace(yamlText(p["containerPort"]))
		}
		spec := objects["Service"]["spec"].(map[string]any)
		for _, sp := range spec["ports"].([]any) {
			sp := sp.(map[string]any)
			name := sp["name"].(string)
			if sp["targetPort"] != name || ports[name] != c.service[name] {
				t.Errorf("%v: Service port %v targets container port %q (%s), want %s", c.args, sp, name, ports[name], c.service[name])
			}
		}
		if got, _ := spec["externalTrafficPolicy"].(string); got != c.policy {
			t.Errorf("%v: externalTrafficPolicy %q, want %q", c.args, got, c.policy)
		}
		if c.policy == "" {
			ann := objects["Service"]["metadata"].(map[string]any)["annotations"].(map[string]any)
			if ann["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] != "*" {
				t.Errorf("%v: the balancer annotations are not carried: %v", c.args, ann)
			}
		}
	}
}

func yamlText(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}

// The generated respond placeholder (no --upstream) ends with a newline,
// not the two characters \ and n; untranslated keys reach standard error.
func TestImportRespondAndUntranslated(t *testing.T) {
	p, err := kongPlan([]string{"KONG_DATABASE=off"}, map[string]string{}, "")
	if err != nil {
		t.Fatal(err)
	}
	js, err := adapt(p.caddyfile())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"body": "client {http.vars.client_ip}\n"`)) {
		t.Errorf("the respond body is not the client and a newline:\n%s", js)
	}
	t.Setenv("KONG_DATABASE", "off")
	out, err := runImport(t, kongCommand())
	if err != nil || !strings.Contains(out, "caddy real-ip import kong: not translated: KONG_DATABASE (environment)") {
		t.Errorf("stderr does not list KONG_DATABASE: %v\n%s", err, out)
	}
}

// The source's certificates: Kong's ssl_cert from a chart secretVolume and
// ingress-nginx's --default-ssl-certificate are served by the Caddyfile and
// mounted by the Deployment from their Secrets.
func TestOutputDirCertificates(t *testing.T) {
	for _, c := range []struct {
		cmd              *cobra.Command
		args             []string
		tls, secret, dir string
	}{
		{kongCommand(), []string{"--helm-values", "../testdata/import/kong-helm/aws-nlb-proxy-protocol.yaml", "--set", "secretVolumes[0]=kong-tls",
			"--set", "env.ssl_cert=/etc/secrets/kong-tls/tls.crt,env.ssl_cert_key=/etc/secrets/kong-tls/tls.key"},
			"tls /etc/secrets/kong-tls/tls.crt /etc/secrets/kong-tls/tls.key", "kong-tls", "/etc/secrets/kong-tls"},
		{ingressNginxCommand(), []string{"--helm-values", "../testdata/import/ingress-nginx-helm/etp-local.yaml", "--set", "controller.extraArgs.default-ssl-certificate=web/wildcard-tls"},
			"tls /etc/caddy/default-certificate/tls.crt /etc/caddy/default-certificate/tls.key", "wildcard-tls", "/etc/caddy/default-certificate"},
	} {
		dir := t.TempDir()
		if out, err := runImport(t, c.cmd, append(c.args, "--output-dir", dir)...); err != nil {
			t.Fatalf("%v: %v\n%s", c.args, err, out)
		}
		cf, _ := os.ReadFile(filepath.Join(dir, "Caddyfile"))
		if !strings.Contains(string(cf), "\t"+c.tls+"\n") || strings.Contains(string(cf), "tls internal") {
			t.Errorf("%v: the Caddyfile does not serve the source's certificate:\n%s", c.args, cf)
		}
		if _, err := adapt(cf); err != nil {
			t.Errorf("%v: %v", c.args, err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "caddy.yaml"))
		for _, want := range []string{"secretName: " + c.secret, "mountPath: " + c.dir} {
			if !strings.Contains(string(data), want) {
				t.Errorf("%v: the manifests lack %q:\n%s", c.args, want, data)
			}
		}
	}
}

// PROXY listeners with nothing trusted are refused, naming the fix, and
// --accept-more-trust writes the wrapper trusting every sender.
func TestAcceptMoreTrust(t *testing.T) {
	t.Setenv("KONG_PROXY_LISTEN", "0.0.0.0:8000 proxy_protocol")
	t.Setenv("KONG_REAL_IP_HEADER", "proxy_protocol")
	if out, err := runImport(t, kongCommand()); err == nil || !strings.Contains(err.Error(), "--accept-more-trust") {
		t.Errorf("nothing trusted: %v\n%s", err, out)
	}
	out, err := runImport(t, kongCommand(), "--accept-more-trust")
	if err != nil || !strings.Contains(out, "real_ip 0.0.0.0/0 ::/0") || !strings.Contains(out, "--accept-more-trust made the wrapper") {
		t.Errorf("--accept-more-trust: %v\n%s", err, out)
	}
}
