package listenerwrapper

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/caddy-realip/realip/internal/conninfo"
)

// refusalLog rate-limits the warnings for refused connections: at most one
// line per second for each peer address and reason, so a flood of bad
// headers from one peer writes a handful of lines, and never hides another
// peer's. The next line written for a key says how many were suppressed.
// zap's own sampler counts by message only, so it would let one noisy peer
// silence every other; hence this small table.
//
// The table never holds more than refusalMaxKeys peers: a flood from more
// addresses than that (an IPv6 /64 has 2^64) shares one key per reason,
// "other peers", rate-limited like one peer. Its memory is bounded whatever
// the number of addresses.
type refusalLog struct {
	mu        sync.Mutex
	entries   map[refusalKey]*refusalEntry
	lastSweep time.Time
	now       func() time.Time
}

type refusalKey struct {
	peer   netip.Addr // zero for a peer on a UNIX socket
	what   string
	others bool // the shared key of the peers that found the table full
}

type refusalEntry struct {
	last       time.Time
	suppressed int
}

const (
	refusalInterval = time.Second
	refusalMaxKeys  = 4096 // peers in the table at most; entries idle for a while are swept
)

// allow reports whether a line for (peer, what) may be written now, how
// many lines for it were suppressed since the last one written, and whether
// the peer was counted with the other peers of a full table.
func (l *refusalLog) allow(peer net.Addr, what string) (ok bool, suppressed int, others bool) {
	ap, _, _ := conninfo.Peer(peer)
	key := refusalKey{peer: ap.Addr(), what: what}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.now != nil {
		now = l.now()
	}
	if l.entries == nil {
		l.entries = map[refusalKey]*refusalEntry{}
	}
	e := l.entries[key]
	if e == nil && len(l.entries) >= refusalMaxKeys {
		if now.Sub(l.lastSweep) >= refusalInterval {
			l.sweep(now)
		}
		if len(l.entries) >= refusalMaxKeys {
			// Full: this peer shares its reason's key (a few reasons,
			// so a few keys more than refusalMaxKeys at most).
			key = refusalKey{what: what, others: true}
			e = l.entries[key]
		}
	}
	if e == nil {
		l.entries[key] = &refusalEntry{last: now}
		return true, 0, key.others
	}
	if now.Sub(e.last) < refusalInterval {
		e.suppressed++
		return false, 0, key.others
	}
	suppressed = e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed, key.others
}

// sweep forgets keys that wrote nothing and suppressed nothing for a while.
// A key with suppressed lines is kept until its next line reports them.
func (l *refusalLog) sweep(now time.Time) {
	l.lastSweep = now
	for k, e := range l.entries {
		if e.suppressed == 0 && now.Sub(e.last) >= 2*refusalInterval {
			delete(l.entries, k)
		}
	}
}
