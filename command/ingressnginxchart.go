package command

import (
	"fmt"
	"strconv"
	"strings"
)

// ingressNginxChartDefaults are the values of ingress-nginx's chart that
// reach the client address, the ports and the Service
// (charts/ingress-nginx/values.yaml).
const ingressNginxChartDefaults = `
controller:
  config: {}
  extraArgs: {}
  containerPort:
    http: 80
    https: 443
  hostNetwork: false
  hostPort:
    enabled: false
  service:
    enabled: true
    type: LoadBalancer
    externalTrafficPolicy: ""
    annotations: {}
    loadBalancerSourceRanges: []
    ports:
      http: 80
      https: 443
    internal:
      enabled: false
`

// ingressNginxChart is what the chart gives the controller: its ConfigMap
// (controller.config), its ports (the controller's flags, from
// controller.extraArgs; the chart passes no port flags itself), and the
// controller Service.
type ingressNginxChart struct {
	configMap                       *configMap
	httpPort, httpsPort, healthPort int
	service                         *service
	untranslated                    []string
	files                           string
	defaultCert                     string // --default-ssl-certificate NAMESPACE/SECRET
}

func readIngressNginxChart(files, sets []string) (*ingressNginxChart, error) {
	hv, err := readHelmValues(ingressNginxChartDefaults, files, sets)
	if err != nil {
		return nil, err
	}
	c := &ingressNginxChart{files: strings.Join(hv.from, ", "),
		configMap: &configMap{Kind: "ConfigMap", Name: "ingress-nginx-controller", Data: hv.stringMap("controller.config")}}
	port := func(flag string, def int) (int, error) {
		v := hv.str("controller.extraArgs." + flag)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("controller.extraArgs.%s must be a port number, got '%s'", flag, v)
		}
		return n, nil
	}
	if c.httpPort, err = port("http-port", 80); err != nil {
		return nil, err
	}
	if c.httpsPort, err = port("https-port", 443); err != nil {
		return nil, err
	}
	if c.healthPort, err = port("healthz-port", 10254); err != nil {
		return nil, err
	}
	if hv.boolean("controller.service.enabled") {
		svc := &service{typ: hv.str("controller.service.type"), externalTrafficPolicy: hv.str("controller.service.externalTrafficPolicy"),
			annotations: hv.stringMap("controller.service.annotations")}
		for _, kind := range []string{"http", "https"} {
			sp, err := hv.port("controller.service.ports." + kind)
			if err != nil {
				return nil, err
			}
			target := c.httpPort
			if kind == "https" {
				target = c.httpsPort
			}
			svc.ports = append(svc.ports, servicePortSpec{name: kind, port: sp, targetPort: target})
		}
		c.service = svc
	}
	for _, key := range []string{"controller.hostNetwork", "controller.hostPort.enabled", "controller.service.internal.enabled",
		"controller.service.loadBalancerSourceRanges", "controller.proxySetHeaders", "controller.addHeaders"} {
		v := hv.get(key)
		if v == nil || v == false {
			continue
		}
		if l, ok := v.([]any); ok && len(l) == 0 {
			continue
		}
		if m, ok := v.(map[string]any); ok && len(m) == 0 {
			continue
		}
		c.untranslated = append(c.untranslated, fmt.Sprintf("%s = %v (Helm values)", key, v))
	}
	c.defaultCert = hv.str("controller.extraArgs.default-ssl-certificate")
	for k := range hv.stringMap("controller.extraArgs") {
		if k != "http-port" && k != "https-port" && k != "healthz-port" && k != "default-ssl-certificate" {
			c.untranslated = append(c.untranslated, "controller.extraArgs."+k+" (Helm values)")
		}
	}
	return c, nil
}
