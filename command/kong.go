package command

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-realip/realip/handler"
	"github.com/caddy-realip/realip/internal/ipset"
)

// kongKeys are the settings `import kong` reads, with Kong's defaults
// (kong.conf.default).
var kongKeys = []struct{ name, def string }{
	{"proxy_listen", "0.0.0.0:8000 reuseport backlog=16384, 0.0.0.0:8443 http2 ssl reuseport backlog=16384"},
	{"trusted_ips", ""},
	{"real_ip_header", "X-Real-IP"},
	{"real_ip_recursive", "off"},
	{"status_listen", "off"},
	{"ssl_cert", ""},
	{"ssl_cert_key", ""},
	{"port_maps", ""},
}

// kongListenFlags are the proxy_listen flags Kong accepts
// (kong/conf_loader/listeners.lua), as Lua patterns in Kong's usage text.
var kongListenFlags = []string{"ssl", "http2", "proxy_protocol", "deferred", "bind", "reuseport", "backlog=%d+",
	"ipv6only=on", "ipv6only=off", "so_keepalive=on", "so_keepalive=off", "so_keepalive=%w*:%w*:%d*"}

var (
	backlogFlag   = regexp.MustCompile(`^backlog=\d+$`)
	keepaliveFlag = regexp.MustCompile(`^so_keepalive=(\w*):(\w*):(\d*)$`)
)

// readKongConf reads the keys of a kong.conf: "key = value" lines, "#"
// starting a comment unless escaped as "\#", as Kong's loader reads them.
func readKongConf(r io.Reader) (map[string]string, error) {
	conf := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		var b strings.Builder
		for i := 0; i < len(line); i++ {
			if line[i] == '\\' && i+1 < len(line) && line[i+1] == '#' {
				b.WriteByte('#')
				i++
				continue
			}
			if line[i] == '#' {
				break
			}
			b.WriteByte(line[i])
		}
		line = strings.TrimSpace(b.String())
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("kong.conf line %d: want key = value, got '%s'", n, line)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if err := checkInput(fmt.Sprintf("kong.conf line %d", n), key, key+" = "+value); err != nil {
			return nil, err
		}
		conf[key] = value
	}
	return conf, sc.Err()
}

// kongPlan translates Kong's settings: the environment (KONG_<KEY>) over
// kong.conf over Kong's defaults, as Kong resolves them.
//
// environ is the environment as KEY=VALUE lines (os.Environ): every other
// KONG_ variable, and every other kong.conf key, is listed as not
// translated.
func kongPlan(environ []string, conf map[string]string, confName string) (*plan, error) {
	return kongPlanWithChart(environ, conf, confName, nil)
}

// kongPlanWithChart is kongPlan with the environment Kong's Helm chart
// gives the container as a layer under kong.conf: environment over
// kong.conf over the chart's values over Kong's defaults.
func kongPlanWithChart(environ []string, conf map[string]string, confName string, chart *kongChart) (*plan, error) {
	envMap := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			envMap[k] = v
		}
	}
	env := func(k string) string { return envMap[k] }
	p := &plan{command: "import kong"}
	values := map[string]string{}
	for _, k := range kongKeys {
		envName := "KONG_" + strings.ToUpper(k.name)
		v, from := k.def, "Kong's default"
		if chart != nil {
			if c, ok := chart.env[envName]; ok && strings.TrimSpace(c) != "" {
				v, from = c, chart.from(envName)
			}
		}
		if c, ok := conf[k.name]; ok && strings.TrimSpace(c) != "" {
			v, from = c, confName
		}
		if e := env(envName); strings.TrimSpace(e) != "" {
			v, from = e, "environment "+envName
		}
		if err := checkInput(from, k.name, v); err != nil {
			return nil, err
		}
		v = strings.TrimSpace(v)
		values[k.name] = v
		shown := v
		if shown == "" {
			shown = "(empty)"
		}
		p.sources = append(p.sources, fmt.Sprintf("%s = %s  (%s)", k.name, shown, from))
	}

	if v := values["trusted_ips"]; v != "" {
		entries := ipset.Expand([]string{v})
		if _, _, err := ipset.Parse(entries); err != nil {
			return nil, err // Kong's own wording, naming the entry
		}
		p.trustedIPs = entries
	}
	header, err := handler.CheckHeaderName(values["real_ip_header"])
	if err != nil {
		return nil, err
	}
	if header == handler.HeaderProxyProtocol {
		p.header = header
	} else {
		p.header = values["real_ip_header"]
	}
	// Kong reads "on" and "true" as true and anything else as false.
	switch r := values["real_ip_recursive"]; r {
	case "on", "true":
		p.recursive = true
	case "off", "false":
	default:
		p.notes = append(p.notes, fmt.Sprintf("real_ip_recursive '%s' is neither on nor true: Kong reads it as off, and so does this file.", r))
	}
	if p.header != handler.HeaderProxyProtocol && len(p.trustedIPs) > 0 {
		p.handlerNotes = append(p.handlerNotes, "Behind a PROXY listener, the header is believed only from trusted PROXY sources (Kong judges the balancer).")
	}

	listeners, err := kongListeners(values["proxy_listen"])
	if err != nil {
		return nil, err
	}
	p.listeners = listeners

	// status_listen: Kong's status API, where its Helm chart points the
	// kubelet's probes (/status, /status/ready). Here a plain server
	// without the wrapper answers them.
	if sl := values["status_listen"]; sl != "off" && sl != "" {
		status, err := kongListeners(sl)
		if err != nil {
			return nil, fmt.Errorf("status_listen: %w", err)
		}
		if len(status) > 0 {
			pr := &probe{origin: "Kong: status_listen " + sl + " (the kubelet's probes: no PROXY header, no wrapper)", port: status[0].port,
				paths: []string{"/status", "/status/ready"}}
			if status[0].https || status[0].proxyProtocol {
				pr.origin += "; served here as plain HTTP: point the probes' scheme at HTTP"
			}
			for _, l := range p.listeners {
				if l.port == pr.port {
					return nil, fmt.Errorf("status_listen port %d is also a proxy_listen port", pr.port)
				}
			}
			p.probe = pr
		}
	} else if p.hasProxyProtocol() {
		p.notes = append(p.notes, "status_listen is off: every port here reads a PROXY header, so a kubelet probe (which sends none) gets no answer; set KONG_STATUS_LISTEN=0.0.0.0:8100 (the Helm chart's status port) for a probe server.")
	}

	// ssl_cert and ssl_cert_key: the source's certificate, by path (Kong
	// also takes the PEM text or base64 itself: write that to a file).
	if cert, key := values["ssl_cert"], values["ssl_cert_key"]; cert != "" || key != "" {
		certs, keys := splitList(cert), splitList(key)
		if len(certs) != len(keys) {
			return nil, fmt.Errorf("ssl_cert has %d entries and ssl_cert_key %d: give one key per certificate", len(certs), len(keys))
		}
		for i := range certs {
			for _, f := range []struct{ name, v string }{{"ssl_cert", certs[i]}, {"ssl_cert_key", keys[i]}} {
				if strings.HasPrefix(f.v, "-----BEGIN") || !isPath(f.v) {
					return nil, fmt.Errorf("%s: '%s' is not a file path: Caddy's tls directive reads files; write the certificate (PEM or base64, as Kong takes it inline) to a file and give its path", f.name, shorten(f.v))
				}
			}
		}
		p.cert, p.certKey, p.certFrom = certs[0], keys[0], "ssl_cert, ssl_cert_key"
		p.certName = certificateName(certs[0])
		if len(certs) > 1 {
			p.notes = append(p.notes, fmt.Sprintf("ssl_cert lists %d certificates (RSA and ECDSA); Caddy's tls directive takes one pair: the first is used (%s).", len(certs), certs[0]))
		}
		if p.certName == "" {
			p.notes = append(p.notes, "The certificate "+certs[0]+" could not be read here, so no fallback_sni names it: clients that ask for a name it does not hold get no certificate (Kong serves it for every name).")
		}
	}

	// port_maps: the ports clients connect to (a Service maps them),
	// reported upstream in X-Forwarded-Port as Kong does.
	if pm := values["port_maps"]; pm != "" {
		if _, err := handler.ParsePortMaps([]string{pm}); err != nil {
			return nil, err
		}
		p.portMaps = splitList(pm)
	}

	// What else Kong was given, which this file does not translate.
	translated := map[string]bool{}
	for _, k := range kongKeys {
		translated[k.name] = true
	}
	var other []string
	for k := range conf {
		if !translated[k] {
			other = append(other, k+" ("+confName+")")
		}
	}
	for k := range envMap {
		name, ok := strings.CutPrefix(k, "KONG_")
		if ok && !translated[strings.ToLower(name)] {
			other = append(other, k+" (environment)")
		}
	}
	if chart != nil {
		for k := range chart.env {
			name, _ := strings.CutPrefix(k, "KONG_")
			if !translated[strings.ToLower(name)] && envMap[k] == "" {
				other = append(other, k+" ("+chart.from(k)+")")
			}
		}
		other = append(other, chart.untranslated...)
		p.sources = append(p.sources, chart.sources...)
		p.service = chart.service
		for _, name := range chart.secrets {
			p.secretMounts = append(p.secretMounts, secretMount{secret: name, path: "/etc/secrets/" + name})
		}
	}
	slices.Sort(other)
	p.untranslated = other
	return p, nil
}

// splitList splits Kong's comma-separated list values.
func splitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// isPath reports whether s is a file path that is one Caddyfile token as
// it is: no white space, quotes, braces or other text Caddy reads
// specially.
func isPath(s string) bool {
	if s == "" || s[0] == '#' || s[0] == '<' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._-+@=:~,", c) >= 0) {
			return false
		}
	}
	return true
}

// shorten keeps an error's quote of a long value readable.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// kongListeners translates proxy_listen, with Kong's error when an entry
// does not parse.
func kongListeners(value string) ([]listener, error) {
	usage := "proxy_listen must be of form: [off] | <ip>:<port> [" + strings.Join(kongListenFlags, "] [") + "], [... next entry ...]"
	entries := strings.Split(value, ",")
	if strings.TrimSpace(entries[0]) == "off" {
		return nil, nil
	}
	var out []listener
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		fields := strings.Fields(entry)
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s; got an empty entry in '%s'", usage, value)
		}
		l := listener{origin: "Kong: " + entry}
		host, portText, splitErr := net.SplitHostPort(fields[0])
		if host == "*" {
			host = "0.0.0.0"
		}
		port, err := strconv.Atoi(portText)
		if splitErr != nil || host == "" || err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("%s; got '%s'", usage, entry)
		}
		l.port = port
		ipv6only := true // nginx's default for [::]
		var keepalive []string
		for _, flag := range fields[1:] {
			switch {
			case flag == "ssl":
				l.https = true
			case flag == "http2":
				// HTTP/2 over TLS is Caddy's default; cleartext gets h2c.
			case flag == "proxy_protocol":
				l.proxyProtocol = true
			case flag == "deferred":
				l.notes = append(l.notes, "deferred: Go does not set TCP_DEFER_ACCEPT; nothing to do.")
			case flag == "bind":
				l.notes = append(l.notes, "bind: Caddy binds each listen address on its own already.")
			case flag == "reuseport":
				l.notes = append(l.notes, "reuseport: Caddy is one process and binds with SO_REUSEPORT already.")
			case backlogFlag.MatchString(flag):
				l.notes = append(l.notes, flag+": Caddy takes the kernel's net.core.somaxconn as its backlog; raise that sysctl to "+strings.TrimPrefix(flag, "backlog=")+".")
			case flag == "ipv6only=on":
				ipv6only = true
			case flag == "ipv6only=off":
				ipv6only = false
			case flag == "so_keepalive=on":
				l.notes = append(l.notes, "so_keepalive=on: Caddy turns TCP keepalive on by default.")
			case flag == "so_keepalive=off":
				keepalive = append(keepalive, "keepalive_interval -1s")
			case keepaliveFlag.MatchString(flag):
				m := keepaliveFlag.FindStringSubmatch(flag)
				if m[1] != "" {
					keepalive = append(keepalive, "keepalive_idle "+nginxTime(m[1]))
				}
				if m[2] != "" {
					keepalive = append(keepalive, "keepalive_interval "+nginxTime(m[2]))
				}
				if m[3] != "" {
					keepalive = append(keepalive, "keepalive_count "+m[3])
				}
			default:
				return nil, fmt.Errorf("%s; got '%s' (unknown flag '%s')", usage, entry, flag)
			}
		}
		if slices.Contains(fields[1:], "http2") && !l.https {
			l.h2c = true
		}
		l.serverLines = keepalive
		switch addr, err := netip.ParseAddr(host); {
		case err != nil:
			if !isHostName(host) {
				return nil, fmt.Errorf("%s; got '%s' (the address '%s' is neither an IP address nor a host name)", usage, entry, host)
			}
			l.bind = host
		case addr.IsUnspecified() && addr.Is4():
			l.notes = append(l.notes, "0.0.0.0: Caddy listens on every IPv4 and IPv6 address.")
		case addr.IsUnspecified() && ipv6only:
			l.bind = "tcp6/[::]"
		case addr.IsUnspecified():
			// [::] ipv6only=off: dual-stack, Caddy's default.
		case addr.Is6():
			l.bind = "[" + addr.String() + "]"
		default:
			l.bind = addr.String()
		}
		// nginx's [::]:P is an IPv6-only socket beside 0.0.0.0:P (Kong's
		// chart lists both); Caddy's :P is one socket for both.
		if l.bind == "tcp6/[::]" {
			if i := slices.IndexFunc(out, func(o listener) bool {
				return o.port == l.port && o.bind == "" && o.https == l.https && o.proxyProtocol == l.proxyProtocol && o.h2c == l.h2c
			}); i >= 0 {
				out[i].origin += ", " + entry
				continue
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// nginxTime turns an nginx time ("30", "30s", "1m") into a Caddy duration.
func nginxTime(s string) string {
	if _, err := strconv.Atoi(s); err == nil {
		return s + "s"
	}
	return s
}

// kongUpstreamHeaders are the README's header_up lines for Kong's upstream
// headers.
var kongUpstreamHeaders = [][2]string{
	{"X-Real-IP", "{http.real_ip.upstream.x_real_ip}"},
	{"X-Forwarded-For", "{http.real_ip.upstream.x_forwarded_for}"},
	{"X-Forwarded-Proto", "{http.real_ip.upstream.x_forwarded_proto}"},
	{"X-Forwarded-Host", "{http.real_ip.upstream.x_forwarded_host}"},
	{"X-Forwarded-Port", "{http.real_ip.upstream.x_forwarded_port}"},
	{"X-Forwarded-Path", "{http.real_ip.upstream.x_forwarded_path}"},
}

// isHostName reports whether s is a DNS host name (letters, digits, '-'
// and '.'): only such a name is written as a bind token, so nothing Caddy
// reads specially ({$ENV}, {placeholders}, quotes, braces) reaches the
// output.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return s[0] != '-' && s[0] != '.'
}
