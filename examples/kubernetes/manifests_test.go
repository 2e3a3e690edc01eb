// Package kubernetes holds the Kubernetes examples and the test that keeps
// them honest. It is a Go module of its own so that the Kubernetes API
// modules never enter the plugin's module graph (a Caddy build with the
// plugin does not grow by them).
package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	_ "github.com/caddy-realip/realip"
	"github.com/caddy-realip/realip/internal/configtest"
)

// example is one folder's manifests, decoded.
type example struct {
	dir         string
	configMaps  []corev1.ConfigMap
	deployments []appsv1.Deployment
	services    []corev1.Service
	ingresses   []networkingv1.Ingress
}

// decode reads every document of a manifest file strictly: a field the
// Kubernetes API type does not have fails the test.
func decode(t *testing.T, dir string) example {
	t.Helper()
	ex := example{dir: dir}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("%s: no manifests", dir)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			var target any
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 ConfigMap":
				ex.configMaps = append(ex.configMaps, corev1.ConfigMap{})
				target = &ex.configMaps[len(ex.configMaps)-1]
			case "apps/v1 Deployment":
				ex.deployments = append(ex.deployments, appsv1.Deployment{})
				target = &ex.deployments[len(ex.deployments)-1]
			case "v1 Service":
				ex.services = append(ex.services, corev1.Service{})
				target = &ex.services[len(ex.services)-1]
			case "networking.k8s.io/v1 Ingress":
				ex.ingresses = append(ex.ingresses, networkingv1.Ingress{})
				target = &ex.ingresses[len(ex.ingresses)-1]
			default:
				t.Fatalf("%s document %d: unexpected %s %s", file, i, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
				t.Errorf("%s document %d (%s): %v", file, i, meta.Kind, err)
			}
		}
	}
	return ex
}

// readmeAnnotations returns every Service annotation the README and the
// docs/ pages (the Kubernetes recipes are in docs/kubernetes.md) name.
func readmeAnnotations(t *testing.T) map[string]bool {
	t.Helper()
	pages, _ := filepath.Glob("../../docs/*.md")
	names := map[string]bool{}
	for _, page := range append([]string{"../../README.md"}, pages...) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("`(service\\.beta\\.kubernetes\\.io/[a-z0-9_.-]+)").FindAllStringSubmatch(string(data), -1) {
			names[m[1]] = true
		}
	}
	return names
}

// loadCaddyfile adapts a Caddyfile with the plugin and provisions it, as
// caddy run does; it returns the adapted HTTP app.
func loadCaddyfile(t *testing.T, name string, body []byte) caddyhttp.App {
	t.Helper()
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": name})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, w := range warnings {
		t.Errorf("%s: %s", name, w)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	var app caddyhttp.App
	if raw := cfg.AppsRaw["http"]; raw != nil {
		if err := json.Unmarshal(raw, &app); err != nil {
			t.Fatal(err)
		}
	}
	if err := configtest.Validate(t, js); err != nil {
		t.Errorf("%s does not load: %v", name, err)
	}
	return app
}

// containerPort resolves a probe's port (a name or a number).
func containerPort(c corev1.Container, port string) (int32, bool) {
	if n, err := strconv.Atoi(port); err == nil {
		return int32(n), true
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func TestExamples(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for _, e := range entries {
		if e.IsDir() {
			examples = append(examples, e.Name())
		}
	}
	want := []string{"aks-private-link", "aws-privatelink-endpoints", "cloudflare", "eks-nlb-instance", "eks-nlb-ip", "etp-local", "l7-x-forwarded-for"}
	if !slices.Equal(examples, want) {
		t.Fatalf("example folders %v, want %v", examples, want)
	}
	documented := readmeAnnotations(t)
	for _, dir := range examples {
		t.Run(dir, func(t *testing.T) {
			ex := decode(t, dir)
			if len(ex.configMaps) != 1 || len(ex.deployments) != 1 || len(ex.services) == 0 {
				t.Fatalf("want one ConfigMap, one Deployment and a Service; got %d, %d, %d",
					len(ex.configMaps), len(ex.deployments), len(ex.services))
			}
			cm, dep := ex.configMaps[0], ex.deployments[0]
			caddyfile, ok := cm.Data["Caddyfile"]
			if !ok {
				t.Fatalf("ConfigMap %s has no Caddyfile key", cm.Name)
			}
			app := loadCaddyfile(t, dir+"/Caddyfile", []byte(caddyfile))

			// The Deployment mounts that ConfigMap at /etc/caddy, where the
			// image's command reads the Caddyfile.
			mounted := false
			for _, v := range dep.Spec.Template.Spec.Volumes {
				if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
					for _, c := range dep.Spec.Template.Spec.Containers {
						for _, m := range c.VolumeMounts {
							mounted = mounted || (m.Name == v.Name && m.MountPath == "/etc/caddy")
						}
					}
				}
			}
			if !mounted {
				t.Errorf("Deployment %s does not mount ConfigMap %s at /etc/caddy", dep.Name, cm.Name)
			}
			if got := dep.Spec.Selector.MatchLabels; !equalLabels(got, dep.Spec.Template.Labels) {
				t.Errorf("Deployment selector %v does not match its pod labels %v", got, dep.Spec.Template.Labels)
			}

			// Probes hit a port whose server has no PROXY wrapper (the
			// kubelet sends no header) and that answers /healthz.
			c := dep.Spec.Template.Spec.Containers[0]
			for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if probe == nil || probe.HTTPGet == nil {
					t.Errorf("%s probe missing or not httpGet", name)
					continue
				}
				port, ok := containerPort(c, probe.HTTPGet.Port.String())
				if !ok {
					t.Errorf("%s probe port %s is not a container port", name, probe.HTTPGet.Port.String())
					continue
				}
				if srv := serverOn(app, port); srv == nil {
					t.Errorf("%s probe port %d: no Caddy server listens there", name, port)
				} else if hasRealIPWrapper(srv) {
					t.Errorf("%s probe port %d has the real_ip listener wrapper: a probe without a PROXY header would be refused", name, port)
				}
			}

			for _, svc := range ex.services {
				if !equalLabels(svc.Spec.Selector, dep.Spec.Template.Labels) {
					t.Errorf("Service %s selector %v does not select the pods %v", svc.Name, svc.Spec.Selector, dep.Spec.Template.Labels)
				}
				for _, p := range svc.Spec.Ports {
					if _, ok := containerPort(c, p.TargetPort.String()); !ok {
						t.Errorf("Service %s port %s targets %s, not a container port", svc.Name, p.Name, p.TargetPort.String())
					}
				}
				for a := range svc.Annotations {
					if !documented[a] {
						t.Errorf("Service %s annotation %s is not explained in the README or docs/", svc.Name, a)
					}
				}
			}
		})
	}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) == 0 {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// serverOn returns the server that listens on port.
func serverOn(app caddyhttp.App, port int32) *caddyhttp.Server {
	for _, srv := range app.Servers {
		for _, l := range srv.Listen {
			if strings.HasSuffix(l, ":"+strconv.Itoa(int(port))) {
				return srv
			}
		}
	}
	return nil
}

func hasRealIPWrapper(srv *caddyhttp.Server) bool {
	for _, raw := range srv.ListenerWrappersRaw {
		var w struct {
			Wrapper       string `json:"wrapper"`
			MissingHeader string `json:"missing_header"`
		}
		if json.Unmarshal(raw, &w) == nil && w.Wrapper == "real_ip" && w.MissingHeader != "allow" {
			return true
		}
	}
	return false
}

// TestDockerfile checks that the image is built on Caddy's builder-image
// pattern with the Caddy version and the plugin path of the plugin's go.mod.
func TestDockerfile(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	module := regexp.MustCompile(`(?m)^module (\S+)$`).FindSubmatch(gomod)
	caddyVersion := regexp.MustCompile(`(?m)^\s*github\.com/caddyserver/caddy/v2 v(\S+)`).FindSubmatch(gomod)
	if module == nil || caddyVersion == nil {
		t.Fatalf("go.mod: module or Caddy version not found")
	}
	version := string(caddyVersion[1])
	docker, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, withs, builds []string
	for _, line := range strings.Split(string(docker), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "FROM ") {
			froms = append(froms, strings.Fields(line)[1])
		}
		if m := regexp.MustCompile(`--with (\S+?)(@\S+)?(=\S+)?(\s|$)`).FindStringSubmatch(line); m != nil {
			withs = append(withs, m[1])
		}
		if m := regexp.MustCompile(`xcaddy build (v\S+)`).FindStringSubmatch(line); m != nil {
			builds = append(builds, m[1])
		}
	}
	if !slices.Equal(froms, []string{"caddy:" + version + "-builder", "caddy:" + version}) {
		t.Errorf("FROM lines %v, want caddy:%s-builder then caddy:%s", froms, version, version)
	}
	if !slices.Equal(builds, []string{"v" + version}) {
		t.Errorf("xcaddy build %v, want v%s", builds, version)
	}
	if !slices.Equal(withs, []string{string(module[1])}) {
		t.Errorf("--with %v, want %s", withs, module[1])
	}
	for _, dir := range []string{"eks-nlb-ip", "etp-local"} {
		data, _ := os.ReadFile(filepath.Join(dir, "caddy.yaml"))
		if !bytes.Contains(data, []byte("image: caddy-realip:"+version)) {
			t.Errorf("%s: the image is not caddy-realip:%s", dir, version)
		}
	}
}

// TestPluginGraphHasNoKubernetes: the Kubernetes API modules this test uses
// stay in this module; the plugin's own module graph (what a Caddy build
// with the plugin pulls in) has none of them.
func TestPluginGraphHasNoKubernetes(t *testing.T) {
	for _, file := range []string{"../../go.mod", "../../go.sum"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "k8s.io/") {
				t.Errorf("%s: %s", file, line)
			}
		}
	}
}
