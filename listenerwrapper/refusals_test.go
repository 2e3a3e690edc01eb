package listenerwrapper

import (
	"net"
	"runtime"
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
		if ok, _, _ := l.allow(peer, "malformed PROXY header"); ok {
			written++
		}
		now = now.Add(time.Millisecond) // 1,000 in one second
	}
	if written != 1 {
		t.Errorf("1,000 refusals in a second from one peer wrote %d lines, want 1", written)
	}
	// Another peer, and another reason from the same peer, are not held back.
	if ok, _, _ := l.allow(b, "malformed PROXY header"); !ok {
		t.Error("another peer's warning was suppressed")
	}
	if ok, _, _ := l.allow(a, "no PROXY header from a trusted sender (missing_header reject)"); !ok {
		t.Error("another reason's warning was suppressed")
	}
	// A second later the next line says how many were suppressed.
	now = now.Add(time.Second)
	ok, suppressed, _ := l.allow(a, "malformed PROXY header")
	if !ok || suppressed != 999 {
		t.Errorf("after a second: ok %v, suppressed %d, want true, 999", ok, suppressed)
	}
	if ok, suppressed, _ := l.allow(a, "malformed PROXY header"); ok || suppressed != 0 {
		t.Errorf("right after: ok %v suppressed %d", ok, suppressed)
	}
}

// The table stays bounded under a flood from many addresses.
func TestRefusalLogSweep(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &refusalLog{now: func() time.Time { return now }}
	for i := 0; i < 20000; i++ {
		peer := &net.TCPAddr{IP: net.IPv4(198, 51, byte(i>>8), byte(i)), Port: 1}
		if ok, _, _ := l.allow(peer, "malformed PROXY header"); !ok {
			t.Fatalf("first refusal from %s suppressed", peer)
		}
		now = now.Add(time.Millisecond)
	}
	if n := len(l.entries); n > 2*refusalMaxKeys {
		t.Errorf("%d entries kept", n)
	}
}

// A flood from a million addresses within one second, as from an IPv6 /64,
// keeps the table at its bound and writes a bounded number of lines.
func TestRefusalLogBoundedUnderAddressFlood(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &refusalLog{now: func() time.Time { return now }}
	written := 0
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const peers = 1_000_000
	ip := make(net.IP, 16)
	copy(ip, net.ParseIP("2001:db8::"))
	for i := 0; i < peers; i++ {
		ip[12], ip[13], ip[14], ip[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if ok, _, _ := l.allow(&net.TCPAddr{IP: ip, Port: 1}, "malformed PROXY header"); ok {
			written++
		}
		if i%1000 == 999 {
			now = now.Add(time.Millisecond) // the whole flood within one second
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := len(l.entries); n > refusalMaxKeys+1 {
		t.Errorf("%d entries after %d addresses, want at most %d", n, peers, refusalMaxKeys+1)
	}
	if written > refusalMaxKeys+1 {
		t.Errorf("%d lines written in one second, want at most %d", written, refusalMaxKeys+1)
	}
	ok, suppressed, others := l.allow(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:1"), Port: 1}, "malformed PROXY header")
	if ok || !others || suppressed != 0 {
		t.Errorf("a new peer of a full table: ok %v others %v", ok, others)
	}
	if e := l.entries[refusalKey{what: "malformed PROXY header", others: true}]; e == nil || e.suppressed < peers-refusalMaxKeys-1 {
		t.Errorf("the shared key: %+v, want about %d suppressed", e, peers-refusalMaxKeys)
	}
	// Once the flood is over, the table is swept and a new peer has a line
	// of its own again.
	now = now.Add(2 * time.Second)
	if ok, suppressed, others = l.allow(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:2"), Port: 1}, "malformed PROXY header"); !ok || others || suppressed != 0 {
		t.Errorf("after the flood: ok %v others %v suppressed %d", ok, others, suppressed)
	}
	t.Logf("%d refused addresses in one second: %d entries, %d lines, heap %+d KiB", peers, len(l.entries), written,
		(int64(after.HeapAlloc)-int64(before.HeapAlloc))/1024)
}
