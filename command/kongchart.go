package command

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// kongChartDefaults are the values of Kong's chart (kong/kong and
// kong/ingress's gateway) that reach the client address and the
// listeners: charts/kong/values.yaml.
const kongChartDefaults = `
proxy:
  enabled: true
  type: LoadBalancer
  annotations: {}
  http:
    enabled: true
    servicePort: 80
    containerPort: 8000
    parameters: []
  tls:
    enabled: true
    servicePort: 443
    containerPort: 8443
    parameters: [http2]
  stream: []
status:
  enabled: true
  http:
    enabled: true
    containerPort: 8100
    parameters: []
  tls:
    enabled: false
    containerPort: 8543
    parameters: []
`

// kongChart is what Kong's Helm chart would give the Kong container: its
// KONG_* environment, as the chart's kong.env template builds it (listens
// from proxy.http/tls and status.http/tls, port_maps from the proxy's
// service ports, then env.* and customEnv.* over them), and the proxy
// Service.
type kongChart struct {
	env          map[string]string
	origin       map[string]string // KONG_* → the values key it came from
	untranslated []string
	sources      []string
	service      *service
	files        string
	secrets      []string // secretVolumes: Secrets the chart mounts at /etc/secrets/<name>
}

func (c *kongChart) from(envName string) string {
	return "Helm values " + c.origin[envName] + " in " + c.files
}

// readKongChart reads Kong chart values (files and --set flags).
func readKongChart(files, sets []string) (*kongChart, error) {
	hv, err := readHelmValues(kongChartDefaults, files, sets)
	if err != nil {
		return nil, err
	}
	c := &kongChart{env: map[string]string{}, origin: map[string]string{}, files: strings.Join(hv.from, ", ")}
	listen := func(key string) (string, error) {
		var entries []string
		addresses := hv.list(key + ".addresses")
		if len(addresses) == 0 {
			addresses = []string{"0.0.0.0", "[::]"}
		}
		for _, kind := range []string{"http", "tls"} {
			if !hv.boolean(key + "." + kind + ".enabled") {
				continue
			}
			port, err := hv.port(key + "." + kind + ".containerPort")
			if err != nil {
				return "", err
			}
			params := hv.list(key + "." + kind + ".parameters")
			if kind == "tls" {
				params = append(params, "ssl")
			}
			var uniq []string
			for _, p := range params {
				if p != "" && !slices.Contains(uniq, p) {
					uniq = append(uniq, p)
				}
			}
			for _, addr := range addresses {
				entries = append(entries, strings.TrimSpace(fmt.Sprintf("%s:%d %s", addr, port, strings.Join(uniq, " "))))
			}
		}
		if len(entries) == 0 {
			return "off", nil
		}
		return strings.Join(entries, ", "), nil
	}
	set := func(name, value, origin string) {
		c.env[name], c.origin[name] = value, origin
	}
	proxyListen, err := listen("proxy")
	if err != nil {
		return nil, err
	}
	set("KONG_PROXY_LISTEN", proxyListen, "proxy.http, proxy.tls")
	statusListen, err := listen("status")
	if err != nil {
		return nil, err
	}
	set("KONG_STATUS_LISTEN", statusListen, "status.http, status.tls")
	svc := &service{typ: hv.str("proxy.type"), externalTrafficPolicy: hv.str("proxy.externalTrafficPolicy"), annotations: hv.stringMap("proxy.annotations")}
	if hv.boolean("proxy.enabled") {
		var maps []string
		for _, kind := range []string{"http", "tls"} {
			if !hv.boolean("proxy." + kind + ".enabled") {
				continue
			}
			sp, err := hv.port("proxy." + kind + ".servicePort")
			if err != nil && kind == "tls" {
				return nil, err
			}
			cp, err := hv.port("proxy." + kind + ".containerPort")
			if err != nil {
				return nil, err
			}
			if sp != 0 {
				maps = append(maps, fmt.Sprintf("%d:%d", sp, cp))
				name := map[string]string{"http": "kong-proxy", "tls": "kong-proxy-tls"}[kind]
				svc.ports = append(svc.ports, servicePortSpec{name: name, port: sp, targetPort: cp})
			}
		}
		set("KONG_PORT_MAPS", strings.Join(maps, ", "), "proxy.http/tls.servicePort")
		c.service = svc
	}
	for _, tree := range []struct{ key, prefix string }{{"env", "KONG_"}, {"customEnv", ""}} {
		m, _ := hv.get(tree.key).(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := tree.prefix + strings.ToUpper(k)
			if _, isMap := m[k].(map[string]any); isMap {
				// valueFrom (a Secret, a field): not known here.
				c.untranslated = append(c.untranslated, fmt.Sprintf("%s.%s (a valueFrom: read where the pod runs, not here)", tree.key, k))
				continue
			}
			set(name, scalarText(m[k]), tree.key+"."+k)
		}
	}
	// Chart keys about listeners or the client address that this import
	// does not translate: said, never dropped.
	for _, key := range []string{"proxy.stream", "udpProxy.enabled", "proxy.loadBalancerSourceRanges", "proxy.ingress.enabled", "status.tls.enabled", "admin.enabled", "admin.type"} {
		v := hv.get(key)
		if v == nil || v == false {
			continue
		}
		if l, ok := v.([]any); ok && len(l) == 0 {
			continue
		}
		if key == "status.tls.enabled" {
			c.untranslated = append(c.untranslated, "status.tls.enabled (the probe server here is plain HTTP)")
			continue
		}
		c.untranslated = append(c.untranslated, fmt.Sprintf("%s = %v (Helm values)", key, v))
	}
	// The chart mounts each secretVolumes entry at /etc/secrets/<name>,
	// which is where env.ssl_cert and env.ssl_cert_key point.
	for _, name := range hv.list("secretVolumes") {
		if !isHostName(name) {
			return nil, fmt.Errorf("secretVolumes: '%s' is not a Secret name", shorten(name))
		}
		c.secrets = append(c.secrets, name)
	}
	c.sources = append(c.sources, "Helm values (Kong's chart): "+c.files)
	return c, nil
}
