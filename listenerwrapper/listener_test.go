package listenerwrapper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/proxyprotocol"
	goproxy "github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/ppvectors"
)

func provisioned(t testing.TB, lw ListenerWrapper) *ListenerWrapper {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := lw.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	lw.logger = zap.NewNop() // refusals are asserted in the logs by the e2e tests
	return &lw
}

func loadVectors(t testing.TB) []ppvectors.Vector {
	vs, err := ppvectors.Load("../testdata/proxyproto/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// fakePeer makes one end of a net.Pipe report a TCP peer address.
type fakePeer struct {
	net.Conn
	remote net.Addr
}

func (f fakePeer) RemoteAddr() net.Addr { return f.remote }

var trustedPeer = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 40000}

// serveOne runs data through a conn as the HTTP server would use it: it asks
// for the remote address, then reads everything. It returns the address
// and the bytes read after the header, or the read error.
func serveOne(lw *ListenerWrapper, peer net.Addr, data []byte) (string, string, error) {
	server, client := net.Pipe()
	return drive(newConn(fakePeer{server, peer}, lw, peer, lw.trustedPeer(peer)), client, data)
}

// drive writes data from the client end of a pipe, then uses c as the HTTP
// server would: it asks for the remote address and reads everything.
func drive(c, client net.Conn, data []byte) (string, string, error) {
	go func() {
		_, _ = client.Write(data)
		client.Close()
	}()
	remote := c.RemoteAddr().String()
	rest, err := io.ReadAll(c)
	c.Close()
	return remote, string(rest), err
}

func TestVectorsInProcess(t *testing.T) {
	lw := provisioned(t, ListenerWrapper{TrustedIPs: []string{"10.0.0.0/8"}, Timeout: caddy.Duration(200 * time.Millisecond)})
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			remote, rest, err := serveOne(lw, trustedPeer, append(v.Data, "GET / HTTP/1.1\r\n\r\n"...))
			switch v.Expect {
			case "close":
				if !errors.Is(err, errClosed) {
					t.Errorf("want the connection refused, got remote %s, %q, %v", remote, rest, err)
				}
			default:
				want := v.Expect
				if want == "peer" {
					want = trustedPeer.String()
				}
				if err != nil || remote != want || rest != "GET / HTTP/1.1\r\n\r\n" {
					t.Errorf("got remote %s, %q, %v; want %s and the request intact", remote, rest, err, want)
				}
			}
		})
	}
}

func TestUntrustedAndMissing(t *testing.T) {
	req := "GET / HTTP/1.1\r\n\r\n"
	untrusted := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}
	header := "PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n"
	cases := []struct {
		name       string
		lw         ListenerWrapper
		peer       net.Addr
		data       string
		wantRemote string
		wantRest   string
		wantErr    bool
	}{
		{"allow: trusted, no header", ListenerWrapper{MissingHeader: "allow"}, trustedPeer, req, trustedPeer.String(), req, false},
		{"reject: trusted, no header", ListenerWrapper{}, trustedPeer, req, trustedPeer.String(), "", true},
		{"ignore: header dropped", ListenerWrapper{}, untrusted, header + req, untrusted.String(), req, false},
		{"skip: bytes untouched", ListenerWrapper{Untrusted: "skip"}, untrusted, header + req, untrusted.String(), header + req, false},
		{"allow: silent, then EOF", ListenerWrapper{MissingHeader: "allow"}, trustedPeer, "", trustedPeer.String(), "", false},
		{"allow: PUT is not a header", ListenerWrapper{MissingHeader: "allow"}, trustedPeer, "PUT / HTTP/1.1\r\n\r\n", trustedPeer.String(), "PUT / HTTP/1.1\r\n\r\n", false},
		{"allow: a lone P then EOF is refused", ListenerWrapper{MissingHeader: "allow"}, trustedPeer, "P", trustedPeer.String(), "", true},
		{"allow: header cut short is refused", ListenerWrapper{MissingHeader: "allow"}, trustedPeer, "PROXY TCP4 1.2", trustedPeer.String(), "", true},
		{"unix peer trusted by unix:", ListenerWrapper{TrustedIPs: []string{"unix:"}}, &net.UnixAddr{Name: "@", Net: "unix"}, header + req, "203.0.113.9:5555", req, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.lw.TrustedIPs == nil {
				c.lw.TrustedIPs = []string{"10.0.0.0/8"}
			}
			c.lw.Timeout = caddy.Duration(200 * time.Millisecond)
			lw := provisioned(t, c.lw)
			remote, rest, err := serveOne(lw, c.peer, []byte(c.data))
			if (err != nil) != c.wantErr || remote != c.wantRemote || rest != c.wantRest {
				t.Errorf("got %s %q %v", remote, rest, err)
			}
		})
	}
}

// TestAcceptDoesNotRead checks that Accept returns a connection whose peer
// has sent nothing, and that untrusted reject closes without reading.
func TestAcceptDoesNotRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lw := provisioned(t, ListenerWrapper{TrustedIPs: []string{"127.0.0.1"}})
	wrapped := lw.WrapListener(ln)
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := wrapped.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	select {
	case c := <-accepted:
		if _, ok := c.RemoteAddr().(*conninfo.Addr); !ok {
			t.Errorf("RemoteAddr is %T", c.RemoteAddr())
		}
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("Accept waited for a silent peer")
	}
}

func TestPlacementErrors(t *testing.T) {
	for _, c := range []struct {
		lw   ListenerWrapper
		want string
	}{
		{ListenerWrapper{}, "trusted_ips is required"},
		{ListenerWrapper{TrustedIPs: []string{"10.0.0.0/8"}, MissingHeader: "maybe"}, "missing_header must be reject or allow, got 'maybe'"},
		{ListenerWrapper{TrustedIPs: []string{"10.0.0.0/8"}, Untrusted: "drop"}, "untrusted must be ignore, reject or skip, got 'drop'"},
		{ListenerWrapper{TrustedIPs: []string{"10.0.0.0/8"}, Timeout: -1}, "timeout must be positive"},
		{ListenerWrapper{TrustedIPs: []string{"lb"}}, "got 'lb'"},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := c.lw.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
}

// chanListener accepts the connections sent on its channel.
type chanListener struct{ conns chan net.Conn }

func (l chanListener) Accept() (net.Conn, error) { return <-l.conns, nil }
func (l chanListener) Close() error              { return nil }
func (l chanListener) Addr() net.Addr            { return &net.TCPAddr{} }

// FuzzConn feeds arbitrary bytes through the whole connection path — the
// wrapped listener's Accept, then the header processing — from a trusted
// and an untrusted peer: Accept must hand over every connection at once
// whatever it will send, nothing may panic, and a connection is either
// refused or hands on the bytes after its header intact.
func FuzzConn(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(append(v.Data, "GET / HTTP/1.1\r\n\r\n"...), true)
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), false)
	f.Add([]byte{}, true)
	lw := provisioned(f, ListenerWrapper{TrustedIPs: []string{"10.0.0.0/8"}, MissingHeader: "allow", Timeout: caddy.Duration(50 * time.Millisecond)})
	untrusted := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}
	inner := chanListener{conns: make(chan net.Conn, 1)}
	wrapped := lw.WrapListener(inner)
	f.Fuzz(func(t *testing.T, data []byte, trusted bool) {
		peer := net.Addr(untrusted)
		if trusted {
			peer = trustedPeer
		}
		server, client := net.Pipe()
		inner.conns <- fakePeer{server, peer}
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := wrapped.Accept()
			accepted <- c
		}()
		var c net.Conn
		select {
		case c = <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("Accept stalled on a connection that has sent nothing yet")
		}
		remote, rest, err := drive(c, client, data)
		if err != nil {
			if !errors.Is(err, errClosed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if remote == "" {
			t.Fatal("empty remote address")
		}
		if !strings.HasSuffix(string(data), rest) {
			t.Fatalf("bytes after the header changed: %q from %q", rest, data)
		}
	})
}

// Connection-rate benchmarks: one new connection per iteration, carrying an
// AWS NLB-shaped v2 header and an HTTP/1.1 request, served by net/http,
// through (a) no wrapper, (b) Caddy's built-in proxy_protocol wrapper,
// (c) real_ip. Compare with benchstat or the ratio of ns/op.
func benchmarkConnections(b *testing.B, wrap func(net.Listener) net.Listener, sendHeader bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RemoteAddr)
	})}
	go func() { _ = srv.Serve(wrap(ln)) }()
	defer srv.Close()
	aws, ok := ppvectors.Find(loadVectors(b), ppvectors.AWSNLB)
	if !ok {
		b.Fatal("AWS NLB vector missing")
	}
	header := aws.Data
	if !sendHeader {
		header = nil
	}
	msg := append(append([]byte(nil), header...), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"...)
	addr := ln.Addr().String()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 4096)
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Write(msg); err != nil {
				b.Error(err)
			}
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				b.Error(err)
				c.Close()
				return
			}
			n, _ := io.ReadFull(resp.Body, buf[:resp.ContentLength])
			if sendHeader && string(buf[:n]) != "203.0.113.9:5555" {
				b.Errorf("client %q", buf[:n])
			}
			resp.Body.Close()
			// Reset rather than close, so that no side keeps the socket in
			// TIME_WAIT: tens of thousands of those would slow down
			// whichever variant runs last.
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
}

// BenchmarkConnections runs the three variants as sub-benchmarks, so that
// with -count they alternate and share the machine's state.
func BenchmarkConnections(b *testing.B) {
	b.Run("none", func(b *testing.B) {
		benchmarkConnections(b, func(l net.Listener) net.Listener { return l }, false)
	})
	b.Run("caddy_proxy_protocol", func(b *testing.B) {
		pp := &proxyprotocol.ListenerWrapper{Allow: []string{"127.0.0.1/32"}, FallbackPolicy: proxyprotocol.Policy(goproxy.REJECT)}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := pp.Provision(ctx); err != nil {
			b.Fatal(err)
		}
		benchmarkConnections(b, pp.WrapListener, true)
	})
	b.Run("real_ip", func(b *testing.B) {
		// Provisioned on a server, as in Caddy, so that its metrics count.
		lw := ListenerWrapper{TrustedIPs: []string{"127.0.0.1"}}
		srv := &caddyhttp.Server{Listen: []string{"127.0.0.1:0"}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.WithValue(context.Background(), caddyhttp.ServerCtxKey, srv)})
		defer cancel()
		if err := lw.Provision(ctx); err != nil {
			b.Fatal(err)
		}
		if lw.metrics == nil {
			b.Fatal("metrics not set up")
		}
		benchmarkConnections(b, lw.WrapListener, true)
	})
}

// TestConcurrentConnections serves many connections at once through an
// http.Server on the wrapped listener — valid headers, malformed ones, none,
// silent senders — so that go test -race sees the real concurrent paths.
func TestConcurrentConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lw := provisioned(t, ListenerWrapper{TrustedIPs: []string{"127.0.0.1"}, Timeout: caddy.Duration(300 * time.Millisecond)})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RemoteAddr)
	})}
	go func() { _ = srv.Serve(lw.WrapListener(ln)) }()
	defer srv.Close()
	addr := ln.Addr().String()
	vectors := loadVectors(t)
	errs := make(chan error, 1000)
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 15; i++ {
				v := vectors[(g*15+i)%len(vectors)]
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				if i%7 == 3 { // a silent sender
					time.Sleep(10 * time.Millisecond)
					c.Close()
					continue
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Write(append(v.Data, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...))
				got, _ := io.ReadAll(c)
				c.Close()
				closed := len(got) == 0
				if closed != (v.Expect == "close") {
					errs <- fmt.Errorf("%s: got %q", v.Name, got)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
