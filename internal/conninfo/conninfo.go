// Package conninfo carries what the real_ip listener wrapper learnt about a
// connection to the real_ip HTTP handler.
//
// Caddy wraps every accepted connection in types of its own before net/http
// sees it, so the handler cannot reach the listener's connection type; but
// RemoteAddr passes through untouched. The listener wrapper therefore makes
// RemoteAddr return an *Addr, which the handler picks up per connection
// through the server's ConnContext hook.
package conninfo

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/pires/go-proxyproto"
)

// Addr is the remote address of a connection accepted by the real_ip
// listener wrapper. Its Network and String report the client (the PROXY
// header's source when one was honoured, otherwise the physical peer); they
// wait until the connection's PROXY header has been processed, which happens
// in the goroutine that first reads from the connection or asks for its
// address, never in the accept loop.
type Addr struct {
	// Ready processes the PROXY header if that has not happened yet. It is
	// safe to call from several goroutines.
	Ready func()
	// Set by the listener before Ready returns:
	Info Info
}

// Info is what is known about a connection once its header was processed.
type Info struct {
	Physical net.Addr           // the socket's peer (the load balancer)
	Trusted  bool               // Physical is in the listener's trusted_ips
	Header   *proxyproto.Header // the header honoured, or nil
	// Source is the header's source address when it became the connection's
	// remote address (command PROXY, TCP over IPv4 or IPv6).
	Source  netip.AddrPort
	Client  net.Addr // what RemoteAddr reports: Source as a *net.TCPAddr, or Physical
	clientS string
}

// RelayedUnknown reports whether the connection's PROXY header relays a
// client it does not name: command PROXY with an unknown source (v1
// UNKNOWN, v2 AF_UNSPEC, AF_UNIX, or a UDP family). Its HTTP headers were
// written by that client, not by the balancer, so they must not be believed
// as the balancer's. v2 LOCAL (the balancer's own connection) is not
// relayed. go-proxyproto reports v1 UNKNOWN with command LOCAL, but v1 has
// no LOCAL: a v1 header without a source is always a relayed unknown.
func (i *Info) RelayedUnknown() bool {
	if i == nil || i.Header == nil || i.Source.IsValid() {
		return false
	}
	return i.Header.Version == 1 || i.Header.Command.IsProxy()
}

// Honour records h as the connection's header; when it names a TCP client
// (command PROXY, TCP over IPv4 or IPv6), that client becomes the
// connection's remote address (an IPv4-mapped source is the IPv4 client)
// and Honour reports true.
func (i *Info) Honour(h *proxyproto.Header) bool {
	i.Header = h
	if !h.Command.IsProxy() || (h.TransportProtocol != proxyproto.TCPv4 && h.TransportProtocol != proxyproto.TCPv6) {
		return false
	}
	src, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ap := src.AddrPort()
	i.Source = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	i.SetClient(net.TCPAddrFromAddrPort(i.Source))
	return true
}

// SetClient records the client address and its text.
func (i *Info) SetClient(a net.Addr) {
	i.Client = a
	i.clientS = a.String()
}

// Network reports the client's network.
func (a *Addr) Network() string {
	a.Ready()
	return a.Info.Client.Network()
}

// String reports the client address.
func (a *Addr) String() string {
	a.Ready()
	return a.Info.clientS
}

// Get returns the connection information, waiting for the header.
func (a *Addr) Get() *Info {
	a.Ready()
	return &a.Info
}

// Peer reads a socket's peer address: the address and port of a TCP peer
// (IPv4-mapped addresses unmapped), or unix for a peer on a UNIX socket.
// ok is false for any other kind of address.
func Peer(a net.Addr) (peer netip.AddrPort, unix, ok bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), false, true
	case *net.UnixAddr:
		return netip.AddrPort{}, true, true
	}
	return netip.AddrPort{}, false, false
}

type ctxKey struct{}

// WithConn stores c's *Addr, if it has one, in ctx. It does not wait for the
// header: it runs in the server's accept loop.
func WithConn(ctx context.Context, c net.Conn) context.Context {
	if a, ok := c.RemoteAddr().(*Addr); ok {
		return context.WithValue(ctx, ctxKey{}, a)
	}
	return ctx
}

// FromContext returns the connection's *Addr stored by WithConn, or nil.
func FromContext(ctx context.Context) *Addr {
	a, _ := ctx.Value(ctxKey{}).(*Addr)
	return a
}

// servers holds the servers (*caddyhttp.Server) whose listeners have the
// real_ip listener wrapper in the configs now loaded. Caddy drops a server's
// raw listener_wrappers once they are loaded, so the handler, provisioned
// later, asks here.
var servers sync.Map

// MarkServer records that srv has the real_ip listener wrapper, until ctx
// (the wrapper's module context) is cancelled when its config is unloaded.
func MarkServer(ctx caddy.Context, srv any) {
	servers.Store(srv, struct{}{})
	ctx.OnCancel(func() { servers.Delete(srv) })
}

// ServerMarked reports whether MarkServer was called for srv.
func ServerMarked(srv any) bool {
	_, ok := servers.Load(srv)
	return ok
}
