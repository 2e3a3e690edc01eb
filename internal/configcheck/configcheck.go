// Package configcheck finds, in a Caddy JSON config, what makes the
// real_ip handler or listener wrapper misjudge a client because of where
// it stands among other modules: handlers that run before real_ip (an
// `order … first` of another plugin), listener wrappers before the real_ip
// wrapper, {http.real_ip.*} placeholders where no real_ip handler runs,
// proxy_protocol mode without the wrapper, trust of every address on a
// public listener, and servers left without a port for probes. It reads
// the JSON only (no module is provisioned), so `caddy real-ip check` can
// judge a config file or the running config, and the handler can warn at
// load.
package configcheck

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/caddy-realip/realip/internal/ipset"
)

// Finding is one problem: where it is, what goes wrong, and what to do.
type Finding struct {
	// Misjudges: a client's address would be wrong (or forgeable) because
	// of it; otherwise a risk worth a look.
	Misjudges bool
	Where     string
	Problem   string
	Fix       string
}

func (f Finding) String() string {
	level := "warning"
	if f.Misjudges {
		level = "error"
	}
	return fmt.Sprintf("%s: %s: %s\n  fix: %s", level, f.Where, f.Problem, f.Fix)
}

type server struct {
	Listen           []string          `json:"listen"`
	ListenerWrappers []json.RawMessage `json:"listener_wrappers"`
	Routes           []route           `json:"routes"`
}

type route struct {
	Handle []json.RawMessage `json:"handle"`
}

// handlerStep is a handler in the order a request meets it.
type handlerStep struct {
	where string
	name  string
	raw   json.RawMessage
}

// flatten lists routes' handlers (subroutes included) in the order a
// request that every matcher lets through meets them.
func flatten(prefix string, routes []route) []handlerStep {
	var out []handlerStep
	for i, r := range routes {
		for j, raw := range r.Handle {
			var h struct {
				Handler string  `json:"handler"`
				Routes  []route `json:"routes"`
			}
			if json.Unmarshal(raw, &h) != nil {
				continue
			}
			where := fmt.Sprintf("%sroute %d, handler %d (%s)", prefix, i, j, h.Handler)
			if h.Handler == "subroute" {
				out = append(out, flatten(fmt.Sprintf("%sroute %d, handler %d (subroute): ", prefix, i, j), h.Routes)...)
				continue
			}
			out = append(out, handlerStep{where: where, name: h.Handler, raw: raw})
		}
	}
	return out
}

// BeforeRealIP returns the handlers a request meets before the first
// real_ip handler of a server's routes (none when there is no real_ip).
// Handlers that neither read nor act on the client address are left out.
func BeforeRealIP(steps []handlerStep) []handlerStep {
	i := slices.IndexFunc(steps, func(s handlerStep) bool { return s.name == "real_ip" })
	if i <= 0 {
		return nil
	}
	var out []handlerStep
	for _, s := range steps[:i] {
		if !harmless[s.name] {
			out = append(out, s)
		}
	}
	return out
}

// harmless handlers cannot see or act on the client address.
var harmless = map[string]bool{"encode": true, "push": true, "tracing": true}

var placeholderUse = regexp.MustCompile(`\{http\.real_ip\.[a-z0-9_.]+\}`)

// Check judges a whole JSON config. caddyfile, if not empty, is the
// Caddyfile it was adapted from, for the checks only the Caddyfile shows
// (a servers block whose key matches no server).
func Check(config []byte, caddyfile string) ([]Finding, error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]server `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("not a Caddy JSON config: %v", err)
	}
	var out []Finding
	names := make([]string, 0, len(cfg.Apps.HTTP.Servers))
	for name := range cfg.Apps.HTTP.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	var allListen []string
	wrappedServers, public := 0, 0
	for _, name := range names {
		srv := cfg.Apps.HTTP.Servers[name]
		allListen = append(allListen, srv.Listen...)
		where := fmt.Sprintf("server %s (%s)", name, strings.Join(srv.Listen, " "))
		// Probes come from the node: only servers beyond loopback count.
		wrapped := 0
		out = append(out, checkServer(where, srv, &wrapped)...)
		if !loopbackOnly(srv.Listen) {
			public++
			if wrapped > 0 {
				wrappedServers++
			}
		}
	}
	if public > 0 && wrappedServers == public {
		out = append(out, Finding{Where: "every server",
			Problem: "each has the real_ip listener wrapper, so a kubelet probe (which sends no PROXY header) gets no answer on any port",
			Fix:     "add a site on a port of its own for the probes (:8081 { respond /healthz 200 }) and key the servers blocks with their listen addresses"})
	}
	if caddyfile != "" {
		out = append(out, checkServersKeys(caddyfile, allListen)...)
	}
	return out, nil
}

func checkServer(where string, srv server, wrappedServers *int) []Finding {
	var out []Finding
	// Listener wrappers: the real_ip wrapper must come first.
	wrapperAt := -1
	for i, raw := range srv.ListenerWrappers {
		var w struct {
			Wrapper string `json:"wrapper"`
		}
		_ = json.Unmarshal(raw, &w)
		if w.Wrapper == "real_ip" {
			wrapperAt = i
			if i > 0 {
				var before []string
				for _, b := range srv.ListenerWrappers[:i] {
					var bw struct {
						Wrapper string `json:"wrapper"`
					}
					_ = json.Unmarshal(b, &bw)
					before = append(before, bw.Wrapper)
				}
				out = append(out, Finding{Misjudges: true, Where: fmt.Sprintf("%s, listener wrapper %d (real_ip)", where, i),
					Problem: fmt.Sprintf("it comes after %s, which reads the connection first: tls would take the PROXY header for a handshake, caddy-l4's matchers see the balancer's address", strings.Join(before, ", ")),
					Fix:     "list real_ip first in listener_wrappers, before layer4, tls and every other wrapper"})
			}
			var opts struct {
				TrustedIPs    []string `json:"trusted_ips"`
				MissingHeader string   `json:"missing_header"`
			}
			_ = json.Unmarshal(raw, &opts)
			out = append(out, checkTrustAll(fmt.Sprintf("%s, listener wrapper %d (real_ip)", where, i), opts.TrustedIPs, srv.Listen)...)
			if opts.MissingHeader != "allow" {
				*wrappedServers++
			}
		}
	}

	steps := flatten(where+", ", srv.Routes)
	realIP := slices.IndexFunc(steps, func(s handlerStep) bool { return s.name == "real_ip" })
	before := BeforeRealIP(steps)
	if realIP >= 0 && wrapperAt >= 0 {
		// Behind the wrapper in proxy_protocol mode the connection's
		// address is already the client: earlier handlers see it too.
		var first struct {
			RealIPHeader string `json:"real_ip_header"`
		}
		_ = json.Unmarshal(steps[realIP].raw, &first)
		if first.RealIPHeader == "proxy_protocol" {
			before = nil
		}
	}
	for _, s := range before {
		out = append(out, Finding{Misjudges: true, Where: s.where,
			Problem: fmt.Sprintf("%s runs before real_ip, so it sees the balancer's address (a rate limit buckets every client together, a block list blocks the balancer or nobody)", s.name),
			Fix:     fmt.Sprintf("in the Caddyfile, put `order real_ip first` after any `order %s first` line (the last `order … first` wins); in JSON, move real_ip ahead of it", s.name)})
	}
	for _, s := range steps {
		if s.name != "real_ip" {
			continue
		}
		var h struct {
			TrustedIPs   []string `json:"trusted_ips"`
			RealIPHeader string   `json:"real_ip_header"`
		}
		_ = json.Unmarshal(s.raw, &h)
		if h.RealIPHeader == "proxy_protocol" && wrapperAt < 0 {
			out = append(out, Finding{Misjudges: true, Where: s.where,
				Problem: "real_ip_header proxy_protocol on a server without the real_ip listener wrapper: there is no PROXY header to read (Caddy refuses to load this)",
				Fix:     "add the wrapper to this server's listener_wrappers (servers <its listen address> { listener_wrappers { real_ip <balancers> } })"})
		}
		out = append(out, checkTrustAll(s.where, h.TrustedIPs, srv.Listen)...)
		if isCDNHeader(h.RealIPHeader) && trustsPrivate(h.TrustedIPs) {
			out = append(out, Finding{Where: s.where,
				Problem: fmt.Sprintf("%s is believed from private addresses: behind an L4 balancer with externalTrafficPolicy: Cluster the peer is a node, which every client's packets pass through, so any client can send %s", h.RealIPHeader, h.RealIPHeader),
				Fix:     "trust only the CDN's published ranges, with externalTrafficPolicy: Local (the CDN's address reaches Caddy) or the PROXY protocol from the balancer"})
		}
	}
	// {http.real_ip.*} placeholders need the handler.
	if realIP < 0 {
		for _, s := range steps {
			if uses := placeholderUse.FindAllString(string(s.raw), -1); len(uses) > 0 {
				out = append(out, Finding{Misjudges: true, Where: s.where,
					Problem: fmt.Sprintf("uses %s, but no real_ip handler runs on this server: the placeholder stays unreplaced (sent literally, or empty)", strings.Join(dedupe(uses), ", ")),
					Fix:     "add a real_ip handler to the site (real_ip <trusted ranges>), before this handler"})
			}
		}
	}
	return out
}

// checkTrustAll flags a trust list that covers every address on a server
// that listens beyond loopback.
func checkTrustAll(where string, trusted []string, listen []string) []Finding {
	var prefixes []netip.Prefix
	for _, e := range ipset.Expand(trusted) {
		if p, err := netip.ParsePrefix(e); err == nil {
			prefixes = append(prefixes, p.Masked())
		}
	}
	v4, v6 := ipset.CoversEveryAddress(prefixes)
	if !v4 && !v6 || loopbackOnly(listen) {
		return nil
	}
	return []Finding{{Where: where,
		Problem: "its trusted ranges cover every address, on a server that listens beyond loopback: anyone who can reach the port chooses their address",
		Fix:     "trust only your balancers' ranges, or make sure nothing but the balancer can reach these ports (security groups, NetworkPolicy)"}}
}

func loopbackOnly(listen []string) bool {
	if len(listen) == 0 {
		return false
	}
	for _, l := range listen {
		l = strings.TrimPrefix(strings.TrimPrefix(l, "tcp/"), "tcp4/")
		host := l
		if i := strings.LastIndexByte(l, ':'); i >= 0 {
			host = strings.Trim(l[:i], "[]")
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.IsLoopback() {
			if host != "localhost" {
				return false
			}
		}
	}
	return true
}

func isCDNHeader(h string) bool {
	switch strings.ToLower(h) {
	case "cf-connecting-ip", "true-client-ip", "fastly-client-ip":
		return true
	}
	return false
}

func trustsPrivate(trusted []string) bool {
	for _, t := range trusted {
		for _, e := range ipset.Expand([]string{t}) {
			if e == "private_ranges" {
				return true
			}
			if p, err := netip.ParsePrefix(e); err == nil && p.Addr().IsPrivate() {
				return true
			}
			if a, err := netip.ParseAddr(e); err == nil && a.IsPrivate() {
				return true
			}
		}
	}
	return false
}

var serversKey = regexp.MustCompile(`(?m)^\s*servers\s+(\S+)\s*\{`)

// checkServersKeys finds a global servers block whose key is no server's
// listen address: its options (the wrapper among them) apply nowhere.
func checkServersKeys(caddyfile string, listen []string) []Finding {
	var out []Finding
	for _, m := range serversKey.FindAllStringSubmatch(caddyfile, -1) {
		key := m[1]
		if slices.Contains(listen, key) {
			continue
		}
		out = append(out, Finding{Misjudges: true, Where: "the global servers " + key + " block",
			Problem: fmt.Sprintf("no server listens on %s (they listen on %s), so its listener wrappers apply to none", key, strings.Join(dedupe(listen), " ")),
			Fix:     "key the block with a listen address exactly as above (bind and default_bind change it), or leave the key out to apply it to every server"})
	}
	return out
}

func dedupe(list []string) []string {
	var out []string
	for _, e := range list {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// RealIPFor returns the first real_ip handler a request for host and path
// meets on the server (its JSON and its place), judging the routes' host
// and path matchers as Caddy does; a route with other matchers is taken to
// match, and said so in notes.
func RealIPFor(srv json.RawMessage, prefix, host, path string) (handler json.RawMessage, where string, notes []string) {
	var s struct {
		Routes []matchedRoute `json:"routes"`
	}
	if json.Unmarshal(srv, &s) != nil {
		return nil, "", nil
	}
	return findRealIP(s.Routes, prefix, host, path, &notes)
}

type matchedRoute struct {
	Match  []map[string]json.RawMessage `json:"match"`
	Handle []json.RawMessage            `json:"handle"`
}

func findRealIP(routes []matchedRoute, prefix, host, path string, notes *[]string) (json.RawMessage, string, []string) {
	for i, r := range routes {
		if !routeMatches(r.Match, host, path, fmt.Sprintf("%sroute %d", prefix, i), notes) {
			continue
		}
		for j, raw := range r.Handle {
			var h struct {
				Handler string         `json:"handler"`
				Routes  []matchedRoute `json:"routes"`
			}
			if json.Unmarshal(raw, &h) != nil {
				continue
			}
			switch h.Handler {
			case "real_ip":
				return raw, fmt.Sprintf("%sroute %d, handler %d", prefix, i, j), *notes
			case "subroute":
				if found, where, _ := findRealIP(h.Routes, fmt.Sprintf("%sroute %d, handler %d (subroute): ", prefix, i, j), host, path, notes); found != nil {
					return found, where, *notes
				}
			}
		}
	}
	return nil, "", *notes
}

// routeMatches: any matcher set matches (OR), each of its matchers must
// (AND); host and path as Caddy's matchers read them.
func routeMatches(sets []map[string]json.RawMessage, host, path, where string, notes *[]string) bool {
	if len(sets) == 0 {
		return true
	}
	for _, set := range sets {
		ok := true
		for name, raw := range set {
			var patterns []string
			switch name {
			case "host":
				_ = json.Unmarshal(raw, &patterns)
				ok = ok && slices.ContainsFunc(patterns, func(p string) bool { return hostMatches(p, host) })
			case "path":
				_ = json.Unmarshal(raw, &patterns)
				ok = ok && slices.ContainsFunc(patterns, func(p string) bool { return pathMatches(p, path) })
			default:
				*notes = append(*notes, fmt.Sprintf("%s has a %s matcher, taken to match", where, name))
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func hostMatches(pattern, host string) bool {
	pattern, host = strings.ToLower(pattern), strings.ToLower(host)
	if pattern == host {
		return true
	}
	// "*.example.com" matches one label.
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == rest {
			return true
		}
	}
	return false
}

func pathMatches(pattern, path string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*") && strings.HasPrefix(pattern, "*"):
		return strings.Contains(path, strings.Trim(pattern, "*"))
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(path, strings.TrimPrefix(pattern, "*"))
	}
	return strings.EqualFold(pattern, path)
}
