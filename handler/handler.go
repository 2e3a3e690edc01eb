// Package handler is the real_ip HTTP handler (module http.handlers.real_ip):
// Kong's trusted_ips, real_ip_header and real_ip_recursive, with the answers
// of nginx's realip module.
package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/forwarded"
	"github.com/caddy-realip/realip/internal/ipset"
	"github.com/caddy-realip/realip/internal/metrics"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Header values of real_ip_header with a meaning of their own.
const (
	HeaderXRealIP        = "X-Real-IP"
	HeaderXForwardedFor  = "X-Forwarded-For"
	HeaderForwarded      = "Forwarded"
	HeaderProxyProtocol  = "proxy_protocol"
	defaultRealIPHeader  = HeaderXRealIP
	appliedVarKey        = "real_ip.applied" // set to true once per request
	placeholderNamespace = "http.real_ip."
)

type mode uint8

const (
	modeSingle        mode = iota // any header but X-Forwarded-For and Forwarded: first line only
	modeXFF                       // X-Forwarded-For: every line
	modeForwarded                 // RFC 7239 Forwarded: every line, every element's for=
	modeProxyProtocol             // the PROXY header's source
)

// Handler replaces the client address of a request that comes from a trusted
// peer with the one that peer reports, as nginx's realip module and Kong's
// trusted_ips / real_ip_header / real_ip_recursive do.
//
// When it finds a client address, r.RemoteAddr becomes client:port (the port
// the entry carried, or 0), Caddy's client_ip var becomes the client, and
// the trusted_proxy var becomes whether the peer was trusted. It applies at
// most once per request: the first real_ip handler that runs wins.
//
// Placeholders, set on every request it sees:
//
//	{http.real_ip.client_ip}    {http.real_ip.client_port}
//	{http.real_ip.peer_ip}      {http.real_ip.peer_port}   (nginx's $realip_remote_addr/_port)
//	{http.real_ip.trusted}      {http.real_ip.source}      (peer, header, proxy_protocol)
//	{http.real_ip.upstream.*}   Kong's upstream headers: x_real_ip, x_forwarded_for,
//	                            x_forwarded_proto, x_forwarded_host, x_forwarded_port,
//	                            x_forwarded_path, x_forwarded_prefix
type Handler struct {
	// Peers whose forwarding headers are believed: IPv4/IPv6 addresses,
	// CIDRs, "unix:" (peers on a UNIX socket) and "private_ranges". Each
	// entry may itself be a comma-separated list, as KONG_TRUSTED_IPS is.
	// Required. "0.0.0.0/0" and "::/0" trust every TCP peer.
	TrustedIPs []string `json:"trusted_ips,omitempty"`

	// Sources of more trusted ranges: any http.ip_sources module (Caddy's
	// static, the plugin's published, third-party ones such as Cloudflare's).
	// The trusted set is their union with trusted_ips, rebuilt when a
	// source's ranges change and swapped in atomically.
	TrustedIPsSourcesRaw []json.RawMessage `json:"trusted_ips_sources,omitempty" caddy:"namespace=http.ip_sources inline_key=source"`

	// The request header that carries the client address: X-Real-IP
	// (default), X-Forwarded-For, any other header name, or proxy_protocol
	// for the source address of the connection's PROXY protocol header.
	// Header names are matched case-insensitively.
	RealIPHeader string `json:"real_ip_header,omitempty"`

	// With X-Forwarded-For (and any other header), walk the list right to
	// left, skipping trusted addresses: the first untrusted one is the client,
	// or the left-most if all are trusted. Off: the right-most entry.
	// In JSON, true/false or Kong's "on"/"off".
	RealIPRecursive Recursive `json:"real_ip_recursive,omitempty"`

	// The number of right-most entries of the header's chain that are
	// proxies whatever their address (load balancers whose addresses
	// cannot be listed). With the peer trusted, these N entries are
	// skipped; the walk then goes on as real_ip_recursive says (on: skip
	// further trusted entries; off: take the next entry). A chain of N
	// entries or fewer gives its left-most entry. Default 0.
	RealIPTrustedHops int `json:"real_ip_trusted_hops,omitempty"`

	// Kong's port_maps: "HOST_PORT:LISTEN_PORT" pairs ("80:8000") for when
	// the ports clients connect to are not the ones Caddy listens on (a
	// Kubernetes Service maps them). {http.real_ip.upstream.x_forwarded_port}
	// then reports the host port for a request on the listen port, as Kong
	// does; a trusted peer's X-Forwarded-Port still wins.
	PortMaps []string `json:"port_maps,omitempty"`

	// After the decision, make the request's forwarding headers say only
	// what trusted hops wrote, for later handlers and plugins that parse
	// them themselves: from a trusted peer, X-Forwarded-For becomes the
	// trusted chain ({http.real_ip.trusted_chain}), X-Real-IP the client,
	// and a Forwarded header the same chain as for= elements; whatever an
	// untrusted sender wrote (Forwarded, X-Forwarded-*, X-Real-IP and
	// real_ip_header) is removed. Off by default: nginx changes no header.
	// The {http.real_ip.*} placeholders still describe the request as it
	// arrived.
	RewriteForwardedHeaders bool `json:"rewrite_forwarded_headers,omitempty"`

	portMaps map[string]string // listen port → host port
	trusted  *ipset.Live
	header   string // canonical MIME form
	mode     mode
	chain    chain // how the header's entries are walked
	wrapped  bool  // the server has the real_ip listener wrapper
	logger   *zap.Logger
	// Caddy fixes a logger's level for the life of a config, so whether
	// the decision line can be written is known at Provision: a request
	// without debug logging skips the logger's check.
	debug   bool
	metrics *metrics.Requests
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.real_ip",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision validates the configuration and builds the trusted set.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.debug = h.logger.Core().Enabled(zapcore.DebugLevel)
	if err := h.setup(h.logger); err != nil {
		return err
	}
	if h.TrustedIPsSourcesRaw != nil {
		live, err := ipset.WithSources(ctx, h, "TrustedIPsSourcesRaw", h.trusted.Load(), h.logger)
		if err != nil {
			return fmt.Errorf("real_ip: %w", err)
		}
		h.trusted = live
	}
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		h.wrapped = true // not in a server: look for the wrapper per request
		return nil
	}
	wrapped := conninfo.ServerMarked(srv)
	h.wrapped = wrapped
	// Kong documents that real_ip_header proxy_protocol needs a
	// proxy_protocol listener but never checks, and silently answers with
	// the load balancer's address; here it is a config error.
	if h.mode == modeProxyProtocol && !wrapped {
		return missingWrapperError(srv.Listen)
	}
	warnings, err := h.trusted.Load().Audit(srv.Listen)
	// Behind the wrapper, a header mode judges the PROXY source, which can
	// be a TCP client even on a UNIX listener: the listeners say nothing.
	// With sources, ranges may come later.
	if err != nil && (h.mode == modeProxyProtocol || !wrapped) && !h.trusted.HasSources() {
		return fmt.Errorf("real_ip: %w", err)
	}
	for _, w := range warnings {
		h.logger.Warn(w, zap.Strings("listen", srv.Listen))
	}
	h.metrics = metrics.ForRequests(ctx)
	return nil
}

// setup validates the options and builds the trusted set; Provision and
// Explain share it.
func (h *Handler) setup(logger *zap.Logger) error {
	set, err := ipset.Build(h.TrustedIPs, h.TrustedIPsSourcesRaw != nil, logger)
	if errors.Is(err, ipset.ErrEmpty) {
		return fmt.Errorf("real_ip: trusted_ips is required (or a trusted_ips_source): list the load balancers or proxies whose headers are believed (for example trusted_ips 10.0.0.0/8)")
	}
	if err != nil {
		return fmt.Errorf("real_ip: %w", err)
	}
	h.trusted = ipset.Static(set)

	name := h.RealIPHeader
	if name == "" {
		name = defaultRealIPHeader
	}
	canonical, err := CheckHeaderName(name)
	if err != nil {
		return fmt.Errorf("real_ip: %w", err)
	}
	switch canonical {
	case HeaderProxyProtocol:
		h.mode = modeProxyProtocol
	case HeaderXForwardedFor:
		h.mode, h.header = modeXFF, canonical
	case HeaderForwarded:
		h.mode, h.header = modeForwarded, canonical
	default:
		h.header = canonical
	}
	switch {
	case h.RealIPTrustedHops < 0:
		return fmt.Errorf("real_ip: real_ip_trusted_hops must be 0 or more, got %d", h.RealIPTrustedHops)
	case h.RealIPTrustedHops > 0 && h.mode == modeProxyProtocol:
		return fmt.Errorf("real_ip: real_ip_trusted_hops counts entries of a header's chain, and real_ip_header proxy_protocol has none: use it with X-Forwarded-For, Forwarded or another header")
	}
	h.chain = chain{forwarded: h.mode == modeForwarded, recursive: bool(h.RealIPRecursive), hops: h.RealIPTrustedHops}
	maps, err := ParsePortMaps(h.PortMaps)
	if err != nil {
		return fmt.Errorf("real_ip: %w", err)
	}
	h.portMaps = maps
	return nil
}

// ParsePortMaps reads Kong's port_maps entries ("80:8000"; an entry may be
// a comma-separated list, as KONG_PORT_MAPS is) into listen port → host
// port, with Kong's error for an entry that is not two ports.
func ParsePortMaps(entries []string) (map[string]string, error) {
	var maps map[string]string
	for _, entry := range entries {
		for _, m := range strings.Split(entry, ",") {
			m = strings.TrimSpace(m)
			if m == "" {
				continue
			}
			host, listen, ok := strings.Cut(m, ":")
			hp, err1 := strconv.Atoi(host)
			lp, err2 := strconv.Atoi(listen)
			if !ok || err1 != nil || err2 != nil || hp < 1 || hp > 65535 || lp < 1 || lp > 65535 {
				return nil, fmt.Errorf("invalid port mapping (`port_maps`): %s (want HOST_PORT:LISTEN_PORT, such as 80:8000)", m)
			}
			if maps == nil {
				maps = map[string]string{}
			}
			maps[strconv.Itoa(lp)] = strconv.Itoa(hp)
		}
	}
	return maps, nil
}

// ServeHTTP applies the realip rules and calls the next handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The request's vars, looked up once for the check and the writes.
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if done, _ := vars[appliedVarKey].(bool); !done {
		h.apply(r, vars)
	}
	return next.ServeHTTP(w, r)
}

// apply is ServeHTTP without the once-per-request guard and the call to the
// next handler.
func (h *Handler) apply(r *http.Request, vars map[string]any) {
	// res is a value: its method value below copies it into the one
	// allocation the placeholders need.
	res := result{source: sourcePeer}
	if h.wrapped {
		if a := conninfo.FromContext(r.Context()); a != nil {
			res.conn = a.Get()
		}
	}
	res.peer, res.peerUnix = parseRemoteAddr(r.RemoteAddr)
	res.peerText = r.RemoteAddr

	// The debug log shows the walk; without debug logging, no trace.
	var trace *[]Step
	var ce *zapcore.CheckedEntry
	if h.debug {
		if ce = h.logger.Check(zapcore.DebugLevel, "real_ip decision"); ce != nil {
			trace = new([]Step)
		}
	}
	h.decide(&res, r.Header, trace)
	// In proxy_protocol mode an untrusted balancer is the client, though
	// the wrapper made the PROXY source the remote address.
	if res.source != sourcePeer || (h.mode == modeProxyProtocol && res.peerText != r.RemoteAddr) {
		r.RemoteAddr = res.clientText()
		if vars != nil {
			vars[caddyhttp.ClientIPVarKey] = hostOf(r.RemoteAddr)
		}
	}
	if vars != nil {
		// Caddy has set trusted_proxy already, so this write replaces a
		// key and never grows the map; it costs what reading it first to
		// skip an unchanged value would.
		vars[caddyhttp.TrustedProxyVarKey] = res.headersTrusted
		vars[appliedVarKey] = true
	}
	h.metrics.Count(int(res.source), res.trusted)
	if ce != nil {
		ce.Write(h.decisionFields(&res, r.Header, *trace)...)
	}
	res.req, res.h = r, h
	if h.RewriteForwardedHeaders {
		h.rewriteHeaders(&res, r)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(res.replace)
	}
}

// forwardingHeaders are the headers that carry a client address or what a
// proxy saw, removed when an untrusted sender wrote them.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Path", "X-Real-Ip"}

// rewriteHeaders is rewrite_forwarded_headers, once the decision is made.
func (h *Handler) rewriteHeaders(res *result, r *http.Request) {
	res.original = r.Header.Clone()
	if !res.headersTrusted {
		for _, name := range forwardingHeaders {
			r.Header.Del(name)
		}
		if h.header != "" {
			r.Header.Del(h.header)
		}
	}
	if !res.trusted {
		return
	}
	chain := res.trustedChainParts()
	r.Header.Set("X-Forwarded-For", strings.Join(chain, ", "))
	r.Header.Set("X-Real-Ip", hostOf(r.RemoteAddr))
	if res.headersTrusted && len(res.original.Values("Forwarded")) > 0 {
		elements := make([]string, len(chain))
		for i, a := range chain {
			if strings.Contains(a, ":") {
				a = `"[` + a + `]"`
			}
			elements[i] = "for=" + a
		}
		r.Header.Set("Forwarded", strings.Join(elements, ", "))
	}
}

// decide fills in the decision for a request from res.peer (and res.conn):
// whether the peer is trusted, and the client and its source. It is the
// handler's whole judgement, shared with Explain; trace, if not nil,
// receives the walk's steps.
func (h *Handler) decide(res *result, header http.Header, trace *[]Step) {
	if h.mode == modeProxyProtocol {
		// The peer is the load balancer itself, as nginx's
		// $realip_remote_addr is with real_ip_header proxy_protocol, and
		// so is the client unless the balancer is trusted (nginx's
		// $remote_addr on a proxy_protocol listen without set_real_ip_from).
		res.peer, res.peerUnix, res.peerText = physicalPeer(res.conn, res.peer, res.peerUnix, res.peerText)
	}
	res.client = res.peer
	set := h.trusted.Load()
	res.set = set
	res.trusted = set.ContainsPeer(res.peer, res.peerUnix)
	res.headersTrusted = res.trusted
	relayedUnknown := res.trusted && res.conn.RelayedUnknown()
	if relayedUnknown {
		// The balancer relayed a client it could not name: the request's
		// headers are that client's, so they are judged as an untrusted
		// peer's (in proxy_protocol mode the client stays the balancer).
		res.headersTrusted = false
		if h.mode != modeProxyProtocol {
			res.trusted = false
		}
	}
	if !res.trusted || relayedUnknown {
		return
	}
	var e forwarded.Entry
	var found bool
	switch h.mode {
	case modeXFF, modeForwarded, modeSingle:
		e, found = h.walk(set, header, trace)
	case modeProxyProtocol:
		if res.conn != nil && res.conn.Source.IsValid() {
			e, found = forwarded.Entry{Addr: res.conn.Source.Addr(), Port: res.conn.Source.Port()}, true
		}
	}
	if !found {
		return
	}
	res.client = netip.AddrPortFrom(e.Addr, e.Port)
	res.source = sourceHeader
	if h.mode == modeProxyProtocol {
		res.source = sourceProxyProtocol
		// The HTTP headers were written by the PROXY source, not by the L4
		// balancer: their X-Forwarded-* are believed only if that source
		// is trusted (Kong believes them whenever the balancer is).
		res.headersTrusted = set.Contains(res.client.Addr())
	}
}

// walk walks the handler's header with a trusted set: the decision's, and
// again for {http.real_ip.trusted_chain} with the set the decision used.
func (h *Handler) walk(set *ipset.Set, header http.Header, trace *[]Step) (forwarded.Entry, bool) {
	c := h.chain
	c.trusted = set
	return c.walk(h.lines(header), trace)
}

// lines returns the lines of its header the handler reads: every line for
// X-Forwarded-For and Forwarded, the first for any other header.
func (h *Handler) lines(header http.Header) []string {
	lines := header[h.header]
	if h.mode == modeSingle && len(lines) > 1 {
		return lines[:1]
	}
	return lines
}

// maxLoggedValue bounds the header value in the debug log: a client can
// send up to max_header_size bytes.
const maxLoggedValue = 256

// maxLoggedSteps and maxLoggedToken bound the debug log's walk the same
// way: a 15 KB header of short entries would otherwise write thousands of
// steps.
const (
	maxLoggedSteps = 16
	maxLoggedToken = 64
)

// decisionFields is the debug log line of one decision.
func (h *Handler) decisionFields(res *result, header http.Header, steps []Step) []zap.Field {
	peer := res.peerText
	if !res.peerUnix {
		peer = res.peer.String()
	}
	fields := []zap.Field{zap.String("peer", peer), zap.Bool("trusted", res.trusted)}
	if h.mode != modeProxyProtocol {
		value := strings.Join(h.lines(header), "\n")
		if len(value) > maxLoggedValue {
			value = value[:maxLoggedValue] + fmt.Sprintf("… (%d bytes)", len(value))
		}
		fields = append(fields, zap.String("header", h.header), zap.String("value", value))
	}
	if len(steps) > 0 {
		// Bounded like the value: the last maxLoggedSteps steps (the walk
		// goes right to left, so the first ones are the proxies' own), each
		// token cut at maxLoggedToken bytes.
		shown := steps
		if len(shown) > maxLoggedSteps {
			shown = shown[:maxLoggedSteps]
		}
		walked := make([]string, 0, len(shown)+1)
		for _, s := range shown {
			token := s.Token
			if len(token) > maxLoggedToken {
				token = token[:maxLoggedToken] + "…"
			}
			walked = append(walked, token+": "+s.Verdict)
		}
		if len(steps) > len(shown) {
			walked = append(walked, fmt.Sprintf("… (%d steps more)", len(steps)-len(shown)))
		}
		fields = append(fields, zap.Strings("walk", walked))
	}
	return append(fields, zap.String("client", res.clientText()), zap.String("source", res.source.String()))
}

// physicalPeer returns the socket's peer of a connection that came through
// the real_ip listener wrapper, or the given peer when there is none.
func physicalPeer(info *conninfo.Info, peer netip.AddrPort, unix bool, text string) (netip.AddrPort, bool, string) {
	if info == nil {
		return peer, unix, text
	}
	physical, physicalUnix, ok := conninfo.Peer(info.Physical)
	switch {
	case !ok:
		return peer, unix, text
	case physicalUnix:
		return physical, true, "@"
	}
	return physical, false, physical.String()
}

// parseRemoteAddr reads r.RemoteAddr. Go's server reports peers on a UNIX
// socket as "@" (or an empty string on some systems).
func parseRemoteAddr(s string) (netip.AddrPort, bool) {
	if s == "@" || s == "" {
		return netip.AddrPort{}, true
	}
	// Most peers are IPv4: the walk's one-pass reader takes a.b.c.d:port
	// in half the time of netip's general parser. Anything else (IPv6,
	// zones, port 0) goes to netip.
	if e, ok := forwarded.ParseEntry(s); ok && e.Addr.Is4() && e.Port != 0 {
		return netip.AddrPortFrom(e.Addr, e.Port), false
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return ap, false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// missingWrapperError explains a real_ip_header proxy_protocol handler on a
// server without the listener wrapper. The usual cause, when a wrapper was
// configured, is a Caddyfile "servers <key>" block whose key is not the
// server's listen address as written (bind and default_bind change it), so
// the block silently applies to no server: the message names the addresses.
func missingWrapperError(listen []string) error {
	addrs := strings.Join(listen, " ")
	key := ":443"
	if len(listen) > 0 {
		key = listen[0]
	}
	return fmt.Errorf("real_ip: real_ip_header proxy_protocol needs the real_ip listener wrapper, listed before tls, on this server, "+
		"which listens on %s, and it has none. "+
		"If you configured one in a Caddyfile servers block with a key (servers <key> { listener_wrappers { ... } }), "+
		"the key must be one of those listen addresses exactly as written (bind and default_bind change it: here, servers %s), "+
		"or leave the key out to apply the block to every server. "+
		"Caddyfile global options: servers %s { listener_wrappers { real_ip <trusted_ips...>; tls } } (one per line); "+
		"JSON: \"listener_wrappers\": [{\"wrapper\":\"real_ip\",\"trusted_ips\":[...]}, {\"wrapper\":\"tls\"}]",
		addrs, key, key)
}

// clientText is the client as client:port, or the peer's text for a peer on
// a UNIX socket that nothing replaced.
func (res *result) clientText() string {
	if res.source == sourcePeer && res.peerUnix {
		return res.peerText
	}
	return res.client.String()
}
