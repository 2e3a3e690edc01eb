package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realip/realip/internal/ppvectors"
)

func loadVectors(t testing.TB) []ppvectors.Vector {
	t.Helper()
	vs, err := ppvectors.Load("../testdata/proxyproto/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// awsHeader is the AWS NLB-shaped v2 header of the vectors.
func awsHeader(t testing.TB) []byte {
	t.Helper()
	v, ok := ppvectors.Find(loadVectors(t), ppvectors.AWSNLB)
	if !ok {
		t.Fatal("AWS NLB vector missing")
	}
	return v.Data
}

// outcome is what a server did with one connection.
type outcome struct {
	closed bool   // closed (or reset) without any response
	status int    // HTTP status otherwise
	body   string // response body
	local  net.Addr
}

// client address the server reported, normalised: "peer" when it is the
// connection's own address.
func (o outcome) String() string {
	if o.closed {
		return "close"
	}
	if o.status != 200 {
		return fmt.Sprintf("status %d", o.status)
	}
	addr, port, _ := strings.Cut(o.body, " ")
	if port == "" {
		port = "0"
	}
	if la, ok := o.local.(*net.TCPAddr); ok && port == fmt.Sprint(la.Port) {
		if a, ok := netipFrom(addr); ok && a == la.AddrPort().Addr().Unmap().String() {
			return "peer"
		}
	}
	if addr == "unix:" || addr == "@" {
		return "peer"
	}
	return net.JoinHostPort(addr, port)
}

func netipFrom(s string) (string, bool) {
	ip := net.ParseIP(s)
	if ip == nil {
		return "", false
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String(), true
	}
	return ip.String(), true
}

// exchange sends prefix (a PROXY header, or anything) and then an HTTP/1.1
// request on a new connection from src to addr ("unix:/path" for a UNIX
// socket) and reports what came back. The server is given wait to answer.
func exchange(t testing.TB, network, src, addr string, prefix []byte, wait time.Duration) outcome {
	t.Helper()
	var conn net.Conn
	var err error
	if network == "unix" {
		conn, err = net.Dial("unix", addr)
	} else {
		conn, err = dialFrom(src)(context.Background(), "tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return roundTrip(t, conn, append(append([]byte(nil), prefix...), request(nil)...), wait)
}

// exchangeWithHeaders is exchange from 127.0.0.1 with extra request headers.
func exchangeWithHeaders(t testing.TB, addr string, prefix []byte, headers []string) outcome {
	t.Helper()
	conn, err := dialFrom("127.0.0.1")(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return roundTrip(t, conn, append(append([]byte(nil), prefix...), request(headers)...), 5*time.Second)
}

func roundTrip(t testing.TB, conn net.Conn, data []byte, wait time.Duration) outcome {
	t.Helper()
	o, err := tryRoundTrip(conn, data, wait)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// tryRoundTrip is roundTrip for goroutines other than the test's: it
// reports what roundTrip would fail the test with.
func tryRoundTrip(conn net.Conn, data []byte, wait time.Duration) (outcome, error) {
	defer conn.Close()
	o := outcome{local: conn.LocalAddr()}
	_ = conn.SetDeadline(time.Now().Add(wait))
	if _, err := conn.Write(data); err != nil {
		o.closed = true
		return o, nil
	}
	all, err := io.ReadAll(conn)
	if len(all) == 0 {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return o, fmt.Errorf("no answer and no close within %s", wait)
		}
		o.closed = true
		return o, nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		return o, fmt.Errorf("bad response %q: %v", all, err)
	}
	body, _ := io.ReadAll(resp.Body)
	o.status = resp.StatusCode
	o.body = strings.TrimSpace(string(body))
	return o, nil
}
