package ipset

import (
	"context"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// fakeSource is an IP range source whose list the test changes.
type fakeSource struct {
	mu     sync.Mutex
	ranges []netip.Prefix
	calls  int
}

func (f *fakeSource) GetIPRanges(*http.Request) []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.ranges
}

func (f *fakeSource) set(ps ...string) {
	var out []netip.Prefix
	for _, p := range ps {
		out = append(out, netip.MustParsePrefix(p))
	}
	f.mu.Lock()
	f.ranges = out
	f.mu.Unlock()
}

func TestLiveUnionAndSwap(t *testing.T) {
	static, _, _ := Parse([]string{"10.0.0.0/8", "unix:"})
	a, b := &fakeSource{}, &fakeSource{}
	a.set("198.51.100.0/24")
	b.set("::ffff:203.0.113.0/120", "2001:db8::/32")
	l := NewLive(static, []caddyhttp.IPRangeSource{a, b}, nil)
	check := func(addr string, want bool) {
		t.Helper()
		if got := l.Load().Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: %v, want %v", addr, got, want)
		}
	}
	check("10.1.2.3", true)
	check("198.51.100.7", true)
	check("203.0.113.7", true) // a mapped source range matches IPv4 peers
	check("2001:db8::1", true)
	check("192.0.2.1", false)
	if !l.Load().ContainsUnix() {
		t.Error("unix: lost")
	}

	before := l.Load()
	if l.refresh() || l.Load() != before {
		t.Error("rebuilt although nothing changed")
	}
	a.set("192.0.2.0/24")
	if !l.refresh() {
		t.Fatal("not rebuilt after a change")
	}
	check("192.0.2.1", true)
	check("198.51.100.7", false)
	check("10.1.2.3", true)

	// Run polls until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx, 10*time.Millisecond); close(done) }()
	a.set("198.51.100.0/24")
	deadline := time.Now().Add(2 * time.Second)
	for !l.Load().Contains(netip.MustParseAddr("198.51.100.7")) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the change")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// lookUntil looks up an address of the static entries until stop is
// closed, counting the lookups in n (when not nil); the address must be
// trusted at every moment.
func lookUntil(t *testing.T, l *Live, stop <-chan struct{}, n *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if !l.Load().Contains(netip.MustParseAddr("10.0.0.1")) {
			t.Error("the static entry vanished while the set was rebuilt")
			return
		}
		if n != nil {
			n.Add(1)
		}
	}
}

// Lookups go on, without a data race, while the set is swapped.
func TestLiveConcurrentSwap(t *testing.T) {
	static, _, _ := Parse([]string{"10.0.0.0/8"})
	src := &fakeSource{}
	src.set("198.51.100.0/24")
	l := NewLive(static, []caddyhttp.IPRangeSource{src}, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lookUntil(t, l, stop, nil)
		}()
	}
	for i := 0; i < 200; i++ {
		if i%2 == 0 {
			src.set("192.0.2.0/24")
		} else {
			src.set("198.51.100.0/24", "203.0.113.0/24")
		}
		l.refresh()
	}
	close(stop)
	wg.Wait()
}

// A rebuild of 100,000 ranges happens beside the lookups, not in their way:
// lookups go on, with the old set, while the new one is built, and the new
// one answers after the swap.
func TestLiveLookupsGoOnDuringRebuild(t *testing.T) {
	static, _, _ := Parse([]string{"10.0.0.0/8"})
	src := &fakeSource{}
	l := NewLive(static, []caddyhttp.IPRangeSource{src}, nil)
	big := make([]netip.Prefix, 0, 100000)
	for _, p := range randomPrefixes(100000, 7) {
		big = append(big, netip.MustParsePrefix(p))
	}
	src.mu.Lock()
	src.ranges = big
	src.mu.Unlock()

	var lookups atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lookUntil(t, l, stop, &lookups)
	}()
	for lookups.Load() == 0 {
		runtime.Gosched()
	}
	before := lookups.Load()
	start := time.Now()
	l.refresh()
	took := time.Since(start)
	during := lookups.Load() - before
	close(stop)
	<-done
	if during == 0 {
		t.Error("no lookup completed while 100,000 ranges were being built")
	}
	if !l.Load().Contains(big[len(big)/2].Addr()) {
		t.Errorf("the rebuilt set does not hold %v", big[len(big)/2])
	}
	t.Logf("rebuilt 100,000 ranges in %v; %d lookups answered meanwhile", took, during)
}
