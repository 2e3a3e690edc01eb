// Package listenerwrapper is the real_ip listener wrapper (module
// caddy.listeners.real_ip): the PROXY protocol, v1 and v2, on a server's
// TCP and UNIX listeners, as Kong's proxy_protocol listen flag.
package listenerwrapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/ipset"
	"github.com/caddy-realip/realip/internal/metrics"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// Values of MissingHeader and Untrusted.
const (
	MissingReject   = "reject"
	MissingAllow    = "allow"
	UntrustedIgnore = "ignore"
	UntrustedReject = "reject"
	UntrustedSkip   = "skip"

	defaultTimeout = 5 * time.Second
)

// ListenerWrapper reads a PROXY protocol header (v1 or v2) at the start of
// each connection from a trusted sender and makes the header's source the
// connection's remote address, so r.RemoteAddr, the remote_ip matcher,
// Caddy's trusted_proxies and every handler see the client.
//
// It must be listed before the tls listener wrapper: the PROXY header comes
// before the TLS handshake. Headers are read in each connection's own
// goroutine, bounded by Timeout, so a silent sender never delays another
// connection. A malformed header closes that connection, without a
// response, and is logged with the peer and the reason.
type ListenerWrapper struct {
	// Senders whose PROXY headers are honoured: addresses, CIDRs, "unix:"
	// and "private_ranges", as the real_ip handler's trusted_ips. Required.
	TrustedIPs []string `json:"trusted_ips,omitempty"`

	// Sources of more trusted senders: any http.ip_sources module, as the
	// handler's trusted_ips_sources (Caddy's own proxy_protocol wrapper
	// takes only a static list).
	TrustedIPsSourcesRaw []json.RawMessage `json:"trusted_ips_sources,omitempty" caddy:"namespace=http.ip_sources inline_key=source"`

	// How long a connection may take to send its header. Default 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// A trusted sender that sends no header: "reject" (default) closes the
	// connection without a response; "allow" serves it with its own address
	// (health checks, in-cluster callers that bypass the load balancer).
	MissingHeader string `json:"missing_header,omitempty"`

	// A peer outside trusted_ips: "ignore" (default) serves it with its own
	// address, reading and throwing away a header it sends; "reject" closes
	// the connection at once; "skip" reads nothing, its bytes are plain HTTP.
	Untrusted string `json:"untrusted,omitempty"`

	trusted  *ipset.Live
	timeout  time.Duration
	logger   *zap.Logger
	metrics  *metrics.Proxy
	refusals *refusalLog
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.real_ip",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision validates the options and checks the wrapper's place among the
// server's listener wrappers.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	lw.logger = ctx.Logger()
	lw.refusals = &refusalLog{}
	set, err := ipset.Build(lw.TrustedIPs, lw.TrustedIPsSourcesRaw != nil, lw.logger)
	if errors.Is(err, ipset.ErrEmpty) {
		return fmt.Errorf("real_ip listener wrapper: trusted_ips is required (or a trusted_ips_source): list the load balancers that send PROXY headers (for example trusted_ips 10.0.0.0/8)")
	}
	if err != nil {
		return fmt.Errorf("real_ip listener wrapper: %w", err)
	}
	lw.trusted = ipset.Static(set)
	if lw.TrustedIPsSourcesRaw != nil {
		if lw.trusted, err = ipset.WithSources(ctx, lw, "TrustedIPsSourcesRaw", set, lw.logger); err != nil {
			return fmt.Errorf("real_ip listener wrapper: %w", err)
		}
	}

	lw.timeout = time.Duration(lw.Timeout)
	if lw.timeout == 0 {
		lw.timeout = defaultTimeout
	}
	if lw.timeout < 0 {
		return fmt.Errorf("real_ip listener wrapper: timeout must be positive, got %s", lw.timeout)
	}
	switch lw.MissingHeader {
	case "":
		lw.MissingHeader = MissingReject
	case MissingReject, MissingAllow:
	default:
		return fmt.Errorf("real_ip listener wrapper: missing_header must be reject or allow, got '%s'", lw.MissingHeader)
	}
	switch lw.Untrusted {
	case "":
		lw.Untrusted = UntrustedIgnore
	case UntrustedIgnore, UntrustedReject, UntrustedSkip:
	default:
		return fmt.Errorf("real_ip listener wrapper: untrusted must be ignore, reject or skip, got '%s'", lw.Untrusted)
	}

	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		warnings, err := lw.trusted.Load().Audit(srv.Listen)
		if err != nil && !lw.trusted.HasSources() {
			return fmt.Errorf("real_ip listener wrapper: %w", err)
		}
		for _, w := range warnings {
			lw.logger.Warn(w, zap.Strings("listen", srv.Listen))
		}
		lw.metrics = metrics.ForProxy(ctx)
		before, err := checkPlacement(srv)
		if err != nil {
			return err
		}
		if len(before) > 0 {
			lw.logger.Warn("listener wrappers listed before real_ip see the PROXY header's bytes as if they were the client's; list real_ip first unless they are meant to",
				zap.Strings("before_real_ip", before))
		}
		if len(srv.TLSConnPolicies) > 0 && (len(srv.Protocols) == 0 || slices.Contains(srv.Protocols, "h3")) {
			lw.logger.Warn("HTTP/3 is enabled on this server: QUIC runs over UDP and carries no PROXY header, so HTTP/3 clients are seen with the load balancer's address; set protocols h1 h2 on the server unless the load balancer terminates QUIC")
		}
		// Hand each connection's PROXY data to the real_ip handler.
		srv.RegisterConnContext(conninfo.WithConn)
		conninfo.MarkServer(ctx, srv)
	}
	return nil
}

// checkPlacement refuses a config where TLS would come before the PROXY
// header: the wrapper listed after tls, or tls left out on a server that
// serves HTTPS (Caddy then puts TLS first). It returns the other wrappers
// listed before this one. It runs while Caddy loads the server's
// listener_wrappers, the only time their raw config is still there.
func checkPlacement(srv *caddyhttp.Server) ([]string, error) {
	self, tls := -1, -1
	var names []string
	for i, raw := range srv.ListenerWrappersRaw {
		var w struct {
			Wrapper string `json:"wrapper"`
		}
		if json.Unmarshal(raw, &w) != nil {
			continue
		}
		names = append(names, w.Wrapper)
		switch w.Wrapper {
		case "real_ip":
			if self < 0 {
				self = i
			}
		case "tls":
			tls = i
		}
	}
	if self < 0 {
		return nil, nil
	}
	const fix = "the PROXY header comes before the TLS handshake: list real_ip before tls in listener_wrappers ({\"wrapper\":\"real_ip\"} then {\"wrapper\":\"tls\"}; in a Caddyfile: listener_wrappers { real_ip {...} tls })"
	if tls >= 0 && tls < self {
		return nil, fmt.Errorf("real_ip listener wrapper is listed after tls: %s", fix)
	}
	if tls < 0 && len(srv.TLSConnPolicies) > 0 {
		return nil, fmt.Errorf("real_ip listener wrapper on a server that serves HTTPS without tls in listener_wrappers, so Caddy would put TLS first: %s", fix)
	}
	return names[:self], nil
}

// WrapListener wraps l.
func (lw *ListenerWrapper) WrapListener(l net.Listener) net.Listener {
	return &listener{Listener: l, lw: lw}
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
)
