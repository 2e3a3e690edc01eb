package handler

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/ipset"
	"github.com/caddy-realip/realip/internal/metrics"
)

type source uint8

const (
	sourcePeer source = iota
	sourceHeader
	sourceProxyProtocol
)

// String is the source's name in placeholders, logs and the requests
// metric's source label, which counts sources by the same index.
func (s source) String() string { return metrics.Sources[s] }

// result is what the handler decided for one request. Registered with the
// request's replacer, it answers the {http.real_ip.*} placeholders lazily,
// so a request pays for the text of a placeholder only when something reads
// it.
type result struct {
	req      *http.Request
	conn     *conninfo.Info // set when the connection came through the real_ip listener wrapper
	peer     netip.AddrPort
	peerUnix bool
	peerText string // r.RemoteAddr as the handler received it
	client   netip.AddrPort
	trusted  bool // the peer is in trusted_ips
	// whoever wrote the request's headers is trusted: the peer, or in
	// proxy_protocol mode the PROXY source
	headersTrusted bool
	source         source
	h              *Handler   // for {http.real_ip.trusted_chain}, which walks the header again
	set            *ipset.Set // the trusted set the decision was made with
	// the request's headers as they arrived, when rewrite_forwarded_headers
	// changed them: the placeholders describe what came in
	original http.Header
}

// header is the request's headers as they arrived.
func (res *result) header() http.Header {
	if res.original != nil {
		return res.original
	}
	return res.req.Header
}

func (res result) replace(key string) (any, bool) {
	name, ok := strings.CutPrefix(key, placeholderNamespace)
	if !ok {
		return nil, false
	}
	switch name {
	case "client_ip":
		if res.source == sourcePeer && res.peerUnix {
			return res.peerText, true
		}
		return res.client.Addr().String(), true
	case "client_port":
		if res.source == sourcePeer && res.peerUnix {
			return "", true
		}
		return strconv.Itoa(int(res.client.Port())), true
	case "peer_ip":
		if res.peerUnix {
			return res.peerText, true
		}
		return res.peer.Addr().String(), true
	case "peer_port":
		if res.peerUnix {
			return "", true
		}
		return strconv.Itoa(int(res.peer.Port())), true
	case "trusted":
		return res.trusted, true
	case "source":
		return res.source.String(), true
	case "trusted_chain":
		return res.trustedChain(), true
	}
	if up, ok := strings.CutPrefix(name, "upstream."); ok {
		return res.upstream(up)
	}
	if pp, ok := strings.CutPrefix(name, "proxy_protocol."); ok {
		return proxyProtocolPlaceholder(res.conn, pp)
	}
	return nil, false
}

// upstream computes the request headers Kong sends to its upstreams
// (kong/runloop/handler.lua), so that reverse_proxy can send the same ones
// with header_up lines.
func (res *result) upstream(name string) (any, bool) {
	r := res.req
	clientText := hostOf(r.RemoteAddr)
	switch name {
	case "x_real_ip":
		return clientText, true
	case "x_forwarded_for":
		if xff := res.header().Values("X-Forwarded-For"); len(xff) > 0 {
			peer := res.peerText
			if !res.peerUnix {
				peer = res.peer.Addr().String()
			}
			return strings.Join(xff, ", ") + ", " + peer, true
		}
		return clientText, true
	case "x_forwarded_proto":
		if v := res.trustedHeader("X-Forwarded-Proto"); v != "" {
			return v, true
		}
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	case "x_forwarded_host":
		if v := res.trustedHeader("X-Forwarded-Host"); v != "" {
			return v, true
		}
		return requestHost(r), true
	case "x_forwarded_port":
		if v := res.trustedHeader("X-Forwarded-Port"); v != "" {
			return v, true
		}
		port := serverPort(r)
		if host, ok := res.h.portMaps[port]; ok {
			return host, true
		}
		return port, true
	case "x_forwarded_path":
		if v := res.trustedHeader("X-Forwarded-Path"); v != "" {
			return v, true
		}
		// The path as the client sent it, before any rewrite.
		if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
			return orig.URL.EscapedPath(), true
		}
		return r.URL.EscapedPath(), true
	case "x_forwarded_prefix":
		return res.trustedHeader("X-Forwarded-Prefix"), true
	}
	return nil, false
}

// trustedHeader is an incoming header's first value when whoever wrote the
// headers is trusted, as Kong keeps X-Forwarded-* from trusted_ips only.
func (res *result) trustedHeader(name string) string {
	if !res.headersTrusted {
		return ""
	}
	return res.header().Get(name)
}

// hostOf returns the address part of an "ip:port" remote address without
// allocating.
func hostOf(remoteAddr string) string {
	i := strings.LastIndexByte(remoteAddr, ':')
	if i < 0 {
		return remoteAddr
	}
	host := remoteAddr[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
}

func serverPort(r *http.Request) string {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			return strconv.Itoa(int(ap.Port()))
		}
	}
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		return port
	}
	if r.TLS != nil {
		return "443"
	}
	return "80"
}

// trustedChain is {http.real_ip.trusted_chain}: the client, then the
// entries to its right that the walk went through (trusted proxies, or
// real_ip_trusted_hops), then the peer, as addresses without ports joined
// by ", ". Entries left of the client — whatever a client wrote there — are
// dropped. Just the peer when nothing was taken from a header. It is
// computed only when asked for, by walking the header again with a trace.
func (res result) trustedChain() string {
	return strings.Join(res.trustedChainParts(), ", ")
}

// trustedChainParts is the trusted chain's addresses, client first.
func (res result) trustedChainParts() []string {
	var parts []string
	switch {
	case res.source == sourceProxyProtocol:
		parts = append(parts, res.client.Addr().String())
	case res.source == sourceHeader && res.h != nil && res.req != nil:
		var steps []Step
		res.h.walk(res.set, res.header(), &steps)
		for i := len(steps) - 1; i >= 0; i-- {
			if steps[i].Parsed {
				parts = append(parts, steps[i].Addr.Unmap().String())
			}
		}
	}
	if !res.peerUnix && res.peer.IsValid() {
		parts = append(parts, res.peer.Addr().String())
	}
	return parts
}
