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
type refusalLog struct {
	mu        sync.Mutex
	entries   map[refusalKey]*refusalEntry
	lastSweep time.Time
	now       func() time.Time
}

type refusalKey struct {
	peer netip.Addr // zero for a peer on a UNIX socket
	what string
}

type refusalEntry struct {
	last       time.Time
	suppressed int
}

const (
	refusalInterval = time.Second
	refusalMaxKeys  = 4096 // above this, entries idle for a while are swept
)

// allow reports whether a line for (peer, what) may be written now, and how
// many lines for it were suppressed since the last one written.
func (l *refusalLog) allow(peer net.Addr, what string) (bool, int) {
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
	if e == nil {
		if len(l.entries) >= refusalMaxKeys && now.Sub(l.lastSweep) >= refusalInterval {
			l.sweep(now)
		}
		l.entries[key] = &refusalEntry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < refusalInterval {
		e.suppressed++
		return false, 0
	}
	suppressed := e.suppressed
	e.last, e.suppressed = now, 0
	return true, suppressed
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
