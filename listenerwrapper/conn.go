package listenerwrapper

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"

	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/metrics"
)

// listener hands out connections that read their PROXY header on first use.
// Accept never reads from a connection, so it never waits on a slow sender.
//
// It does not use go-proxyproto's Listener and Conn, only its parser
// (proxyproto.Read): their optional-header policies treat a header that
// timed out half-way as "no header" and pass its bytes on as data, they
// cannot tell the HTTP server apart from a trusted sender that sent nothing,
// they do not verify CRC32C, and they give nothing to log. Reading the
// header's bytes here and handing exactly those to the parser avoids all four.
type listener struct {
	net.Listener
	lw *ListenerWrapper
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := c.RemoteAddr()
		trusted := l.lw.trustedPeer(peer)
		if !trusted && l.lw.Untrusted == UntrustedReject {
			l.lw.metrics.Count(metrics.UntrustedRejected)
			l.lw.logger.Debug("closing connection from a peer outside trusted_ips (untrusted reject)",
				zap.Stringer("peer", peer))
			_ = c.Close()
			continue
		}
		return newConn(c, l.lw, peer, trusted), nil
	}
}

func (lw *ListenerWrapper) trustedPeer(a net.Addr) bool {
	peer, unix, ok := conninfo.Peer(a)
	return ok && lw.trusted.Load().ContainsPeer(peer, unix)
}

// The PROXY protocol signatures.
var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	maxV1Length = 107 // the spec's limit, CRLF included
	v2FixedLen  = 16
	readBufSize = 256
)

// errClosed is what reads and writes return once the header was refused.
var errClosed = errors.New("real_ip: connection closed: PROXY header refused")

// conn is an accepted connection. Its PROXY header is processed once, by the
// first Read, Write or RemoteAddr().String() — in the connection's own
// goroutine.
type conn struct {
	net.Conn
	lw   *ListenerWrapper
	addr conninfo.Addr
	once sync.Once
	err  error
	br   *bufio.Reader // bytes that arrived after the header; nil when drained

	mu           sync.Mutex
	readDeadline time.Time // the deadline the server set, restored after the header
}

func newConn(c net.Conn, lw *ListenerWrapper, peer net.Addr, trusted bool) *conn {
	pc := &conn{Conn: c, lw: lw}
	pc.addr.Info.Physical = peer
	pc.addr.Info.Trusted = trusted
	pc.addr.Info.SetClient(peer)
	pc.addr.Ready = pc.ready
	return pc
}

func (c *conn) ready() { c.once.Do(c.process) }

// RemoteAddr returns the connection's *conninfo.Addr at once; its String
// waits for the header.
func (c *conn) RemoteAddr() net.Addr { return &c.addr }

func (c *conn) Read(b []byte) (int, error) {
	c.ready()
	if c.err != nil {
		return 0, c.err
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			n, err := c.br.Read(b)
			if c.br.Buffered() == 0 {
				c.br = nil
			}
			return n, err
		}
		c.br = nil
	}
	return c.Conn.Read(b)
}

func (c *conn) Write(b []byte) (int, error) {
	c.ready()
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Write(b)
}

// ReadFrom keeps the socket's sendfile/splice path for file_server and
// reverse_proxy.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	c.ready()
	if c.err != nil {
		return 0, c.err
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http half-close the connection, as on a bare socket.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// process reads and applies the PROXY header, if the policy asks for one,
// and counts what became of it.
func (c *conn) process() {
	info := &c.addr.Info
	lw := c.lw
	if !info.Trusted && lw.Untrusted == UntrustedSkip {
		lw.metrics.Count(metrics.UntrustedIgnored)
		return
	}

	start := time.Now()
	_ = c.Conn.SetReadDeadline(start.Add(lw.timeout))
	c.br = bufio.NewReaderSize(c.Conn, readBufSize)
	raw, err := readHeaderBytes(c.br)
	c.mu.Lock()
	restore := c.readDeadline
	c.mu.Unlock()
	_ = c.Conn.SetReadDeadline(restore)
	var h *proxyproto.Header
	if err == nil && raw != nil {
		h, err = parseHeader(raw)
	}
	lw.metrics.ObserveRead(time.Since(start).Seconds())

	silent := errors.Is(err, errSilent) // nothing at all within timeout
	switch {
	case err != nil && !silent && errors.Is(err, errTimedOut):
		lw.metrics.Count(metrics.Timeout)
		c.refuse("PROXY header not complete within timeout", err)
		return
	case err != nil && !silent:
		lw.metrics.Count(metrics.Malformed)
		c.refuse("malformed PROXY header", err)
		return
	case !info.Trusted:
		// untrusted ignore: a header was read, checked, and thrown away.
		lw.metrics.Count(metrics.UntrustedIgnored)
		if h != nil {
			lw.logger.Debug("ignoring PROXY header from a peer outside trusted_ips",
				zap.Stringer("peer", info.Physical))
		}
		return
	case h == nil && lw.MissingHeader == MissingReject:
		if silent {
			lw.metrics.Count(metrics.Timeout)
			c.refuse("no PROXY header from a trusted sender within timeout (missing_header reject)", nil)
			return
		}
		lw.metrics.Count(metrics.MissingRejected)
		c.refuse("no PROXY header from a trusted sender (missing_header reject)", nil)
		return
	case h == nil:
		if silent {
			lw.metrics.Count(metrics.Timeout)
		} else {
			lw.metrics.Count(metrics.MissingAllowed)
		}
		return
	}
	if info.Honour(h) {
		lw.metrics.Count(metrics.Accepted)
		return
	}
	lw.metrics.Count(metrics.Local)
}

// refuse closes the connection without a response and logs why, at most
// once per second for each peer address and reason (refusalLog).
func (c *conn) refuse(what string, err error) {
	c.err = errClosed
	if ok, suppressed, others := c.lw.refusals.allow(c.addr.Info.Physical, what); ok {
		fields := []zap.Field{zap.Stringer("peer", c.addr.Info.Physical)}
		if err != nil {
			fields = append(fields, zap.String("reason", err.Error()))
		}
		if suppressed > 0 {
			fields = append(fields, zap.Int("suppressed", suppressed))
		}
		if others {
			// suppressed counts the lines of every peer beyond the table
			fields = append(fields, zap.Bool("suppressed_from_other_peers", true))
		}
		c.lw.logger.Warn(what, fields...)
	}
	_ = c.Conn.Close()
}

// readHeaderBytes returns the bytes of the PROXY header at the start of br,
// nil if the connection does not start with a PROXY signature, or an error
// if it starts with one but the header is cut short, too long, or not
// CRLF-terminated (v1).
func readHeaderBytes(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		v1 := len(b) <= len(sigV1) && bytes.HasPrefix(sigV1, b)
		v2 := len(b) <= len(sigV2) && bytes.HasPrefix(sigV2, b)
		if len(b) < n {
			if len(b) == 0 && errors.Is(cause(err), errTimedOut) {
				return nil, errSilent
			}
			if len(b) == 0 || (!v1 && !v2) {
				return nil, nil // nothing came, or plain bytes then EOF/timeout
			}
			return nil, fmt.Errorf("PROXY signature cut short after %d bytes: %w", len(b), cause(err))
		}
		switch {
		case !v1 && !v2:
			return nil, nil
		case v1 && n == len(sigV1):
			return readV1(br)
		case v2 && n == len(sigV2):
			return readV2(br)
		}
	}
}

func readV1(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if len(line) > maxV1Length {
		return nil, fmt.Errorf("v1 header longer than %d bytes", maxV1Length)
	}
	if err != nil {
		return nil, fmt.Errorf("v1 header not terminated by CRLF: %w", cause(err))
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errors.New("v1 header ends in LF without CR")
	}
	return append([]byte(nil), line...), nil
}

func readV2(br *bufio.Reader) ([]byte, error) {
	fixed, err := br.Peek(v2FixedLen)
	if err != nil {
		return nil, fmt.Errorf("v2 header cut short: %w", cause(err))
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if n > int(proxyproto.MaxV2HeaderSize) {
		return nil, fmt.Errorf("v2 header announces %d bytes after the fixed part, more than the %d accepted", n, proxyproto.MaxV2HeaderSize)
	}
	raw := make([]byte, v2FixedLen+n)
	if _, err := io.ReadFull(br, raw); err != nil {
		return nil, fmt.Errorf("v2 header cut short (%d bytes announced): %w", len(raw), cause(err))
	}
	return raw, nil
}

// errTimedOut is the cause of a header cut short by the timeout; errSilent
// means nothing at all arrived within it.
var (
	errTimedOut = errors.New("timed out")
	errSilent   = fmt.Errorf("nothing received: %w", errTimedOut)
)

func cause(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errTimedOut
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("connection closed")
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("no line end in %d bytes", readBufSize)
	}
	return err
}

// parseHeader parses exactly the header's bytes with go-proxyproto and
// verifies a CRC32C TLV, which go-proxyproto does not.
func parseHeader(raw []byte) (*proxyproto.Header, error) {
	// go-proxyproto refuses command PROXY with family UNSPEC; the spec leaves
	// that to the receiver, and here it means "keep the connection's own
	// address", as LOCAL does. So it is parsed as LOCAL and marked PROXY.
	proxyUnspec := len(raw) >= v2FixedLen && bytes.HasPrefix(raw, sigV2) && raw[12] == 0x21 && raw[13] == 0x00
	if proxyUnspec {
		raw = append([]byte(nil), raw...)
		raw[12] = 0x20
	}
	size := max(len(raw), 16)
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(raw), size))
	if err != nil {
		return nil, err
	}
	if h.Version == 2 {
		// go-proxyproto splits TLVs only on demand; a header whose TLVs do
		// not add up to its length is malformed now, not when a placeholder
		// asks.
		if _, err := h.TLVs(); err != nil {
			return nil, err
		}
		if err := verifyCRC32C(raw); err != nil {
			return nil, err
		}
	}
	if proxyUnspec {
		h.Command = proxyproto.PROXY
	}
	return h, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verifyCRC32C checks a PP2_TYPE_CRC32C TLV: the checksum of the whole
// header with the TLV's value set to zero.
func verifyCRC32C(raw []byte) error {
	off := v2FixedLen
	switch raw[13] >> 4 {
	case 1:
		off += 12
	case 2:
		off += 36
	case 3:
		off += 216
	}
	for off+3 <= len(raw) {
		typ := raw[off]
		n := int(binary.BigEndian.Uint16(raw[off+1 : off+3]))
		val := off + 3
		if val+n > len(raw) {
			return nil // go-proxyproto has already refused malformed TLVs
		}
		if proxyproto.PP2Type(typ) == proxyproto.PP2_TYPE_CRC32C {
			if n != 4 {
				return fmt.Errorf("CRC32C TLV of %d bytes, want 4", n)
			}
			want := binary.BigEndian.Uint32(raw[val : val+4])
			zeroed := append([]byte(nil), raw...)
			clear(zeroed[val : val+4])
			if got := crc32.Checksum(zeroed, castagnoli); got != want {
				return fmt.Errorf("CRC32C mismatch: header says %08x, computed %08x", want, got)
			}
			return nil
		}
		off = val + n
	}
	return nil
}
