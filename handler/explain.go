package handler

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/conninfo"
)

// Explanation is the handler's decision for one request, step by step, as
// `caddy real-ip explain` prints it.
type Explanation struct {
	Peer        string // as given
	PeerTrusted bool
	Header      string   // the header read, canonical ("" in proxy_protocol mode)
	AllLines    bool     // every line is read (X-Forwarded-For), else the first
	Recursive   bool     //
	Hops        int      // real_ip_trusted_hops
	Lines       []string // the lines the walk read
	Steps       []Step
	Client      string // client:port, or "@" for a UNIX peer kept as the client
	Source      string // peer or header
	Warnings    []string
	ProxyMode   bool // real_ip_header proxy_protocol
}

// Explain runs the handler's own judgement offline: cfg is a real_ip
// handler's configuration, peer the request's remote address as the
// handler would see it ("203.0.113.7:4711", "[2001:db8::1]:443", or "@"
// for a peer on a UNIX socket), header the request's headers.
func Explain(cfg Handler, peer string, header http.Header) (*Explanation, error) {
	return ExplainConn(cfg, peer, header, nil)
}

// ExplainConn is Explain for a connection that came through the real_ip
// listener wrapper: conn is what the wrapper made of it (its PROXY header
// judged), and peer the remote address it reports (the PROXY source when
// the header was honoured). proxy_protocol mode needs conn.
func ExplainConn(cfg Handler, peer string, header http.Header, conn *conninfo.Info) (*Explanation, error) {
	h := cfg
	h.logger = zap.NewNop()
	if err := h.setup(h.logger); err != nil {
		return nil, err
	}
	if h.mode == modeProxyProtocol && conn == nil {
		return nil, fmt.Errorf("real_ip_header proxy_protocol takes the client from the connection's PROXY header, not from the request: give the header with --proxy (and the wrapper's trusted senders)")
	}
	res := result{source: sourcePeer, peerText: peer, conn: conn}
	if peer != "@" {
		ap, err := netip.ParseAddrPort(peer)
		if err != nil {
			return nil, fmt.Errorf("peer '%s' is not address:port (203.0.113.7:4711, [2001:db8::1]:443) or @ for a UNIX socket peer", peer)
		}
		res.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	} else {
		res.peerUnix = true
	}
	var steps []Step
	h.decide(&res, header, &steps)
	ex := &Explanation{
		Peer: res.peerText, PeerTrusted: res.trusted, ProxyMode: h.mode == modeProxyProtocol, Header: h.header, AllLines: h.mode == modeXFF || h.mode == modeForwarded,
		Recursive: bool(h.RealIPRecursive), Hops: h.RealIPTrustedHops, Steps: steps, Client: res.clientText(), Source: res.source.String(),
	}
	ex.Lines = h.lines(header)
	if set := h.trusted.Load(); set.CoversAllIPv4() || set.CoversAllIPv6() {
		ex.Warnings = append(ex.Warnings, "trusted_ips covers every address of a family: any client that can reach Caddy directly can choose its own address")
	}
	return ex, nil
}

// String prints the explanation: the rules, the peer, each entry walked, and
// a last line "client: <addr>:<port> (source <peer|header>)".
func (ex *Explanation) String() string {
	var b strings.Builder
	if ex.ProxyMode {
		fmt.Fprintf(&b, "header: proxy_protocol (the connection's PROXY header, as the listener wrapper read it)\n")
		for _, w := range ex.Warnings {
			fmt.Fprintf(&b, "warning: %s\n", w)
		}
		if ex.PeerTrusted {
			fmt.Fprintf(&b, "peer: %s (the balancer) is in trusted_ips: the PROXY header's source is the client\n", ex.Peer)
		} else {
			fmt.Fprintf(&b, "peer: %s (the balancer) is not in trusted_ips: it is the client\n", ex.Peer)
		}
		fmt.Fprintf(&b, "client: %s (source %s)\n", ex.Client, ex.Source)
		return b.String()
	}
	lines := "its first line"
	if ex.AllLines {
		lines = "every line, last to first"
	}
	rec := "off: the right-most entry is the client"
	if ex.Recursive {
		rec = "on: trusted entries are skipped, right to left"
	}
	fmt.Fprintf(&b, "header: %s (%s); real_ip_recursive %s\n", ex.Header, lines, rec)
	if ex.Hops > 0 {
		fmt.Fprintf(&b, "real_ip_trusted_hops %d: the %d right-most entries are proxies, whatever their address\n", ex.Hops, ex.Hops)
	}
	for _, w := range ex.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	if !ex.PeerTrusted {
		fmt.Fprintf(&b, "peer: %s is not in trusted_ips: its headers are not read\n", ex.Peer)
	} else {
		fmt.Fprintf(&b, "peer: %s is in trusted_ips: its %s header is read\n", ex.Peer, ex.Header)
		if len(ex.Lines) == 0 {
			fmt.Fprintf(&b, "no %s header: nothing to read\n", ex.Header)
		}
		for i, l := range ex.Lines {
			fmt.Fprintf(&b, "line %d: %q\n", i+1, l)
		}
		for _, s := range ex.Steps {
			token := s.Token
			if token == "" {
				token = `""`
			}
			// Without recursion the verdict does not say whether the
			// right-most entry is trusted; the line does.
			trust := ""
			if s.Parsed && s.Verdict == VerdictRightmost {
				trust = " (not trusted)"
				if s.Trusted {
					trust = " (trusted)"
				}
			}
			fmt.Fprintf(&b, "  line %d, %s%s: %s\n", s.Line+1, token, trust, s.Verdict)
		}
		if n := len(ex.Steps); n > 0 && ex.Steps[n-1].Verdict == VerdictUnparsable {
			switch {
			case ex.Source == "header":
				b.WriteString("  the last entry taken stands\n")
			case n > 1 && ex.Hops > 0:
				b.WriteString("  the entries taken are trusted hops, proxies: the peer stays the client\n")
			default:
				b.WriteString("  nothing was taken: the peer stays the client\n")
			}
		}
	}
	fmt.Fprintf(&b, "client: %s (source %s)\n", ex.Client, ex.Source)
	return b.String()
}
