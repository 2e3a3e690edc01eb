package command

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-realip/realip/caddyfile"
	"github.com/caddy-realip/realip/internal/configtest"
	_ "github.com/caddy-realip/realip/listenerwrapper"
)

var update = flag.Bool("update", false, "rewrite the import golden files in testdata/import")

// golden compares out with the file, or writes it under -update.
func golden(t *testing.T, file string, out []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./command -update writes it)", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("output differs from %s:\n%s", file, out)
	}
}

// loads adapts a generated Caddyfile and provisions it, as caddy run would.
func loads(t *testing.T, cf []byte) {
	t.Helper()
	js, err := adapt(cf)
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, cf)
	}
	if err := configtest.Validate(t, js); err != nil {
		t.Errorf("the generated Caddyfile does not load: %v\n%s", err, cf)
	}
}

// expectedError returns the "# error: ..." first line of a case, if any.
func expectedError(data []byte) (string, bool) {
	first, _, _ := strings.Cut(string(data), "\n")
	return strings.CutPrefix(first, "# error: ")
}

// goldenCases runs each file matching pattern (at least min of them) as a
// subtest: plan turns its contents into a Caddyfile, which must equal the
// .caddyfile beside it and load; or, when the file's first line is
// "# error: <text>", plan must fail with an error that contains the text.
func goldenCases(t *testing.T, pattern string, min int, plan func(file string, data []byte) ([]byte, error)) {
	files, _ := filepath.Glob(pattern)
	if len(files) < min {
		t.Fatalf("only %d cases", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, err := plan(file, data)
			if want, isErr := expectedError(data); isErr {
				if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(want)) {
					t.Fatalf("error %v\nwant %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(file, filepath.Ext(file))+".caddyfile", out)
			loads(t, out)
		})
	}
}

// TestImportKongGolden runs each testdata/import/kong/*.env (KONG_*
// variables; CONF names a kong.conf beside it, UPSTREAM the --upstream).
func TestImportKongGolden(t *testing.T) {
	goldenCases(t, "../testdata/import/kong/*.env", 8, func(file string, data []byte) ([]byte, error) {
		env := map[string]string{}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[k] = v
			}
		}
		conf := map[string]string{}
		confName := ""
		if name := env["CONF"]; name != "" {
			confName = "kong.conf"
			f, err := os.Open(filepath.Join(filepath.Dir(file), name))
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if conf, err = readKongConf(f); err != nil {
				return nil, err
			}
		}
		p, err := kongPlan(environOf(env), conf, confName)
		if err != nil {
			return nil, err
		}
		if p.upstream = env["UPSTREAM"]; p.upstream != "" && len(p.trustedIPs) > 0 {
			p.headerUp, p.dropPrefix = kongUpstreamHeaders, true
		}
		if err := p.checkTrust(); err != nil {
			return nil, err
		}
		return p.caddyfile(), nil
	})
}

// TestImportIngressNginxGolden does the same for ConfigMap manifests
// (testdata/import/ingress-nginx/*.yaml), with the default ports and an
// upstream.
func TestImportIngressNginxGolden(t *testing.T) {
	goldenCases(t, "../testdata/import/ingress-nginx/*.yaml", 4, func(file string, data []byte) ([]byte, error) {
		p, err := ingressNginxPlan(data, filepath.Base(file), 80, 443, 10254)
		if err != nil {
			return nil, err
		}
		p.upstream = "http://127.0.0.1:9000"
		if err := p.checkTrust(); err != nil {
			return nil, err
		}
		return p.caddyfile(), nil
	})
}

func TestReadKongConf(t *testing.T) {
	conf, err := readKongConf(strings.NewReader("# comment\nProxy_Listen = 0.0.0.0:8000 # trailing\nreal_ip_header = X-Hash\\#Tag\n\nempty =\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"proxy_listen": "0.0.0.0:8000", "real_ip_header": "X-Hash#Tag", "empty": ""}
	for k, v := range want {
		if conf[k] != v {
			t.Errorf("%s = %q, want %q", k, conf[k], v)
		}
	}
	if _, err := readKongConf(strings.NewReader("just words\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: %v", err)
	}
}

// The environment wins over kong.conf, which wins over Kong's defaults.
func TestKongPrecedence(t *testing.T) {
	env := map[string]string{"KONG_REAL_IP_HEADER": "X-Forwarded-For"}
	conf := map[string]string{"real_ip_header": "CF-Connecting-IP", "real_ip_recursive": "on", "trusted_ips": "10.0.0.0/8"}
	p, err := kongPlan(environOf(env), conf, "kong.conf")
	if err != nil {
		t.Fatal(err)
	}
	if p.header != "X-Forwarded-For" || !p.recursive || strings.Join(p.trustedIPs, " ") != "10.0.0.0/8" || len(p.listeners) != 2 {
		t.Errorf("%+v", p)
	}
	src := strings.Join(p.sources, "\n")
	for _, s := range []string{"(environment KONG_REAL_IP_HEADER)", "real_ip_recursive = on  (kong.conf)", "proxy_listen = 0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384  (Kong's default)"} {
		if !strings.Contains(src, s) {
			t.Errorf("sources do not say %q:\n%s", s, src)
		}
	}
}

// environOf turns a map into os.Environ's form.
func environOf(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// TestImportKongHelmGolden runs each testdata/import/kong-helm/*.yaml (values
// of Kong's chart) through --helm-values.
func TestImportKongHelmGolden(t *testing.T) {
	goldenCases(t, "../testdata/import/kong-helm/*.yaml", 3, func(file string, data []byte) ([]byte, error) {
		chart, err := readKongChart([]string{file}, nil)
		if err != nil {
			return nil, err
		}
		p, err := kongPlanWithChart(nil, map[string]string{}, "", chart)
		if err != nil {
			return nil, err
		}
		p.upstream = "http://127.0.0.1:9000"
		if len(p.trustedIPs) > 0 {
			p.headerUp, p.dropPrefix = kongUpstreamHeaders, true
		}
		if err := p.checkTrust(); err != nil {
			return nil, err
		}
		return p.caddyfile(), nil
	})
}

// TestImportIngressNginxHelmGolden does the same for ingress-nginx's chart.
func TestImportIngressNginxHelmGolden(t *testing.T) {
	goldenCases(t, "../testdata/import/ingress-nginx-helm/*.yaml", 2, func(file string, data []byte) ([]byte, error) {
		chart, err := readIngressNginxChart([]string{file}, nil)
		if err != nil {
			return nil, err
		}
		p, err := ingressNginxPlanFrom(chart.configMap, filepath.Base(file), chart.httpPort, chart.httpsPort, chart.healthPort)
		if err != nil {
			return nil, err
		}
		p.untranslated = append(p.untranslated, chart.untranslated...)
		p.upstream = "http://127.0.0.1:9000"
		if err := p.checkTrust(); err != nil {
			return nil, err
		}
		return p.caddyfile(), nil
	})
}
