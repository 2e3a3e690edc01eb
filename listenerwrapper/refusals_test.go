package listenerwrapper

import (
	"net"
	"testing"
	"time"
)

func TestRefusalLogRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &refusalLog{now: func() time.Time { return now }}
	a := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1000}
	aOtherPort := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 2000}
	b := &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1000}

	written := 0
	for i := 0; i < 1000; i++ {
		peer := a
		if i%2 == 1 {
			peer = aOtherPort // the same address from another port is the same peer
		}
		if ok, _ := l.allow(peer, "malformed PROXY header"); ok {
			written++
		}
		now = now.Add(time.Millisecond) // 1,000 in one second
	}
	if written != 1 {
		t.Errorf("1,000 refusals in a second from one peer wrote %d lines, want 1", written)
	}
	// Another peer, and another reason from the same peer, are not held back.
	if ok, _ := l.allow(b, "malformed PROXY header"); !ok {
		t.Error("another peer's warning was suppressed")
	}
	if ok, _ := l.allow(a, "no PROXY header from a trusted sender (missing_header reject)"); !ok {
		t.Error("another reason's warning was suppressed")
	}
	// A second later the next line says how many were suppressed.
	now = now.Add(time.Second)
	ok, suppressed := l.allow(a, "malformed PROXY header")
	if !ok || suppressed != 999 {
		t.Errorf("after a second: ok %v, suppressed %d, want true, 999", ok, suppressed)
	}
	if ok, suppressed := l.allow(a, "malformed PROXY header"); ok || suppressed != 0 {
		t.Errorf("right after: ok %v suppressed %d", ok, suppressed)
	}
}

// The table stays bounded under a flood from many addresses.
func TestRefusalLogSweep(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &refusalLog{now: func() time.Time { return now }}
	for i := 0; i < 20000; i++ {
		peer := &net.TCPAddr{IP: net.IPv4(198, 51, byte(i>>8), byte(i)), Port: 1}
		if ok, _ := l.allow(peer, "malformed PROXY header"); !ok {
			t.Fatalf("first refusal from %s suppressed", peer)
		}
		now = now.Add(time.Millisecond)
	}
	if n := len(l.entries); n > 2*refusalMaxKeys {
		t.Errorf("%d entries kept", n)
	}
}
