package command

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-realip/realip/handler"
	"github.com/caddy-realip/realip/internal/ipset"
)

// ingressNginxKeys are the controller ConfigMap keys about the client
// address, with ingress-nginx's defaults.
var ingressNginxKeys = []struct{ name, def string }{
	{"use-proxy-protocol", "false"},
	{"proxy-protocol-header-timeout", "5s"},
	{"use-forwarded-headers", "false"},
	{"enable-real-ip", "false"},
	{"forwarded-for-header", "X-Forwarded-For"},
	{"compute-full-forwarded-for", "false"},
	{"proxy-real-ip-cidr", "0.0.0.0/0"},
}

// ingressNginxPlan translates an ingress-nginx controller ConfigMap, as the
// controller's nginx.tmpl uses it: the realip module is on when
// use-forwarded-headers, use-proxy-protocol or enable-real-ip is true, with
// real_ip_header proxy_protocol (with the PROXY protocol) or
// forwarded-for-header, real_ip_recursive on, and set_real_ip_from
// proxy-real-ip-cidr.
func ingressNginxPlan(manifest []byte, fileName string, httpPort, httpsPort, healthzPort int) (*plan, error) {
	if err := checkInput("--configmap", "the file name", fileName); err != nil {
		return nil, err
	}
	cm, err := readConfigMap(manifest, fileName)
	if err != nil {
		return nil, err
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%s: kind is '%s', want ConfigMap (the controller's, named by its --configmap flag)", fileName, cm.Kind)
	}
	return ingressNginxPlanFrom(cm, fileName, httpPort, httpsPort, healthzPort)
}

// ingressNginxPlanFrom translates the controller's ConfigMap data (from a
// manifest, or from the chart's controller.config).
func ingressNginxPlanFrom(cm *configMap, fileName string, httpPort, httpsPort, healthzPort int) (*plan, error) {
	var err error
	p := &plan{command: "import ingress-nginx"}
	values := map[string]string{}
	for _, k := range ingressNginxKeys {
		v, from := k.def, "ingress-nginx's default"
		if d, ok := cm.Data[k.name]; ok {
			v, from = strings.TrimSpace(d), fmt.Sprintf("ConfigMap %s in %s", cm.Name, fileName)
		}
		values[k.name] = v
		p.sources = append(p.sources, fmt.Sprintf("%s: %q  (%s)", k.name, v, from))
	}
	flag := func(name string) (bool, error) {
		b, err := strconv.ParseBool(values[name])
		if err != nil {
			return false, fmt.Errorf("%s: %s must be true or false, got '%s'", fileName, name, values[name])
		}
		return b, nil
	}
	var useProxyProtocol bool
	useProxyProtocol, err = flag("use-proxy-protocol")
	if err != nil {
		return nil, err
	}
	useForwarded, err := flag("use-forwarded-headers")
	if err != nil {
		return nil, err
	}
	enableRealIP, err := flag("enable-real-ip")
	if err != nil {
		return nil, err
	}
	computeFull, err := flag("compute-full-forwarded-for")
	if err != nil {
		return nil, err
	}
	if useProxyProtocol {
		d, err := time.ParseDuration(values["proxy-protocol-header-timeout"])
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s: proxy-protocol-header-timeout must be a duration such as 5s, got '%s'", fileName, values["proxy-protocol-header-timeout"])
		}
		p.ppTimeout = d.String()
	}

	if useForwarded || useProxyProtocol || enableRealIP {
		cidrs := ipset.Expand([]string{values["proxy-real-ip-cidr"]})
		if _, _, err := ipset.Parse(cidrs); err != nil {
			return nil, fmt.Errorf("%s: proxy-real-ip-cidr: %w", fileName, err)
		}
		p.trustedIPs = cidrs
		p.recursive = true // the template always sets real_ip_recursive on
		if useProxyProtocol && !useForwarded {
			p.header = handler.HeaderProxyProtocol
		} else {
			if useProxyProtocol {
				// The template (with both keys true) believes the
				// forwarded-for header from a PROXY source in
				// proxy-real-ip-cidr and takes the PROXY address from any
				// other: the handler behind the wrapper does the same.
				p.notes = append(p.notes, "use-proxy-protocol and use-forwarded-headers: "+values["forwarded-for-header"]+" is believed from PROXY sources in proxy-real-ip-cidr, the PROXY address is the client for any other (the controller's template).")
			}
			if _, err := handler.CheckHeaderName(values["forwarded-for-header"]); err != nil {
				return nil, fmt.Errorf("%s: forwarded-for-header: %w", fileName, err)
			}
			p.header = values["forwarded-for-header"]
		}
	} else {
		p.notes = append(p.notes, "use-forwarded-headers, use-proxy-protocol and enable-real-ip are all false: ingress-nginx believes no header.")
	}

	p.listeners = []listener{
		{origin: fmt.Sprintf("ingress-nginx: --http-port %d", httpPort), port: httpPort, proxyProtocol: useProxyProtocol},
		{origin: fmt.Sprintf("ingress-nginx: --https-port %d", httpsPort), port: httpsPort, https: true, proxyProtocol: useProxyProtocol},
	}

	// The controller's health port, where its chart points the kubelet's
	// probes: a plain server without the wrapper.
	if healthzPort > 0 {
		if healthzPort == httpPort || healthzPort == httpsPort {
			return nil, fmt.Errorf("--healthz-port %d is also the HTTP or HTTPS port", healthzPort)
		}
		p.probe = &probe{origin: fmt.Sprintf("ingress-nginx: --healthz-port %d (the kubelet's probes: no PROXY header, no wrapper)", healthzPort),
			port: healthzPort, paths: []string{"/healthz"}}
	}

	// What the controller sends upstream.
	p.headerUp = append(p.headerUp, [2]string{"X-Real-IP", "{client_ip}"})
	if computeFull && useForwarded {
		// $full_x_forwarded_for: the incoming header, then the PROXY
		// address with the PROXY protocol, else the peer before realip.
		p.fullXFF = "{http.real_ip.peer_ip}"
		if useProxyProtocol {
			p.fullXFF = "{http.real_ip.proxy_protocol.src_ip}"
		}
		p.headerUp = append(p.headerUp, [2]string{"X-Forwarded-For", "{full_x_forwarded_for}"})
	} else {
		if computeFull {
			p.notes = append(p.notes, "compute-full-forwarded-for without use-forwarded-headers: the controller sends X-Forwarded-For: $remote_addr, and so does this file.")
		}
		p.headerUp = append(p.headerUp, [2]string{"X-Forwarded-For", "{client_ip}"})
	}
	if useForwarded {
		p.headerUp = append(p.headerUp,
			[2]string{"X-Forwarded-Proto", "{http.real_ip.upstream.x_forwarded_proto}"},
			[2]string{"X-Forwarded-Host", "{http.real_ip.upstream.x_forwarded_host}"},
			[2]string{"X-Forwarded-Port", "{http.real_ip.upstream.x_forwarded_port}"})
	} else {
		p.headerUp = append(p.headerUp,
			[2]string{"X-Forwarded-Proto", "{http.request.scheme}"},
			[2]string{"X-Forwarded-Host", "{http.request.host}"})
	}

	var other []string
	known := map[string]bool{}
	for _, k := range ingressNginxKeys {
		known[k.name] = true
	}
	for k := range cm.Data {
		if !known[k] {
			other = append(other, k)
		}
	}
	sort.Strings(other)
	p.untranslated = other
	return p, nil
}

// useDefaultCertificate takes the controller's --default-ssl-certificate
// (NAMESPACE/SECRET): the Deployment mounts that Secret and the Caddyfile
// serves its tls.crt for every name, as the controller serves it for hosts
// without a certificate of their own.
func (p *plan) useDefaultCertificate(ref string) error {
	if ref == "" {
		return nil
	}
	ns, secret, ok := strings.Cut(ref, "/")
	if !ok || !isHostName(ns) || !isHostName(secret) {
		return fmt.Errorf("--default-ssl-certificate must be NAMESPACE/SECRET, got '%s'", shorten(ref))
	}
	const dir = "/etc/caddy/default-certificate"
	p.cert, p.certKey = dir+"/tls.crt", dir+"/tls.key"
	p.certFrom = "the controller's --default-ssl-certificate " + ref + ", mounted from the Secret"
	p.secretMounts = append(p.secretMounts, secretMount{secret: secret, path: dir})
	p.notes = append(p.notes, "--default-ssl-certificate "+ref+": the Secret must be in the namespace Caddy runs in; "+
		"clients that ask for a name it does not hold get no certificate unless fallback_sni names one it does.")
	return nil
}
