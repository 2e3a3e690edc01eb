package handler

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/caddy-realip/realip/internal/forwarded"
	"github.com/caddy-realip/realip/internal/ipset"
)

func TestWalk(t *testing.T) {
	trusted, _, _ := ipset.Parse([]string{"10.0.0.0/8", "2001:db8::/32"})
	cases := []struct {
		lines     []string
		recursive bool
		want      string // "" for no answer
	}{
		{nil, true, ""},
		{[]string{""}, true, ""},
		{[]string{"1.1.1.1"}, false, "1.1.1.1:0"},
		{[]string{"1.1.1.1, 10.0.0.1"}, false, "10.0.0.1:0"},
		{[]string{"1.1.1.1, 10.0.0.1"}, true, "1.1.1.1:0"},
		{[]string{"10.0.0.3, 10.0.0.1"}, true, "10.0.0.3:0"},
		{[]string{"1.1.1.1", "10.0.0.1"}, true, "1.1.1.1:0"},
		{[]string{"1.1.1.1", "2.2.2.2"}, true, "2.2.2.2:0"},
		{[]string{"1.1.1.1", "2.2.2.2"}, false, "2.2.2.2:0"},
		{[]string{"bad, 10.0.0.1"}, true, "10.0.0.1:0"},
		{[]string{"10.0.0.1, bad"}, true, ""},
		{[]string{"1.1.1.1", ""}, true, ""},
		{[]string{"", "10.0.0.1"}, true, "10.0.0.1:0"},
		{[]string{"1.1.1.1:99, [2001:db8::1]:5"}, true, "1.1.1.1:99"},
		{[]string{"1.1.1.1, ::ffff:10.0.0.7"}, true, "1.1.1.1:0"},
	}
	for _, c := range cases {
		e, ok := chain{recursive: c.recursive, trusted: trusted}.walk(c.lines, nil)
		got := ""
		if ok {
			got = netip.AddrPortFrom(e.Addr, e.Port).String()
		}
		if got != c.want {
			t.Errorf("%q recursive=%v: got %q want %q", c.lines, c.recursive, got, c.want)
		}
	}
}

func TestWalkDoesNotAllocate(t *testing.T) {
	trusted, _, _ := ipset.Parse([]string{"10.0.0.0/8"})
	lines := []string{"203.0.113.7, 198.51.100.1", "10.1.1.1, 10.2.2.2:80, [2001:db8::1]:443"}
	if n := testing.AllocsPerRun(100, func() { chain{recursive: true, trusted: trusted}.walk(lines, nil) }); n != 0 {
		t.Errorf("walk allocates %v times", n)
	}
}

// FuzzWalk feeds arbitrary header lines (one per \n) to the chain walk:
// it must not panic, and an answer must be an entry that one of the lines
// holds.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{"1.1.1.1, 10.0.0.1", "a\nb", "\n", ",,,", "[::1]:80, 10.0.0.1:1\n10.0.0.2"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	trusted, _, _ := ipset.Parse([]string{"10.0.0.0/8", "::1"})
	f.Fuzz(func(t *testing.T, s string, recursive bool) {
		lines := strings.Split(s, "\n")
		c := chain{recursive: recursive, trusted: trusted}
		e, ok := c.walk(lines, nil)
		var steps []Step
		if te, tok := c.walk(lines, &steps); te != e || tok != ok {
			t.Fatalf("%q: traced walk answers %v %v, untraced %v %v", s, te, tok, e, ok)
		}
		if !ok {
			return
		}
		found := false
		for _, line := range lines {
			for _, tok := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' }) {
				if te, ok := forwarded.ParseEntry(tok); ok && te == e {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("%q: answer %v is in no line", s, e)
		}
	})
}

// BenchmarkWalkChain walks chains of 1k, 10k and 100k entries, all trusted
// but the left-most (the worst case: every entry is parsed and looked up).
// The time per op should grow linearly with the entries, with no
// allocation.
//
//	go test ./handler -run '^$' -bench WalkChain -benchmem
func BenchmarkWalkChain(b *testing.B) {
	trusted, _, _ := ipset.Parse([]string{"10.0.0.0/8"})
	for _, n := range []int{1000, 10000, 100000} {
		var sb strings.Builder
		sb.WriteString("203.0.113.7")
		for i := 1; i < n; i++ {
			fmt.Fprintf(&sb, ", 10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
		}
		lines := []string{sb.String()}
		want := netip.MustParseAddr("203.0.113.7")
		b.Run(fmt.Sprintf("%dk-entries-%dKiB", n/1000, len(lines[0])>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(lines[0])))
			for i := 0; i < b.N; i++ {
				e, ok := chain{recursive: true, trusted: trusted}.walk(lines, nil)
				if !ok || e.Addr != want {
					b.Fatalf("walk: %v %v", e, ok)
				}
			}
		})
	}
}

func walkString(c chain, lines []string) string {
	e, ok := c.walk(lines, nil)
	if !ok {
		return ""
	}
	return netip.AddrPortFrom(e.Addr, e.Port).String()
}

func TestWalkForwarded(t *testing.T) {
	trusted, _, _ := ipset.Parse([]string{"10.0.0.0/8", "2001:db8:cafe::/48"})
	rec := chain{forwarded: true, recursive: true, trusted: trusted}
	last := chain{forwarded: true, trusted: trusted}
	cases := []struct {
		c     chain
		lines []string
		want  string
	}{
		{last, []string{`for=192.0.2.60;proto=http;by=203.0.113.43`}, "192.0.2.60:0"},
		{last, []string{`for=192.0.2.43, for=198.51.100.17`}, "198.51.100.17:0"},
		{rec, []string{`for=192.0.2.43, for=10.0.0.17`}, "192.0.2.43:0"},
		{rec, []string{`For="[2001:db8:cafe::17]:4711"`}, "[2001:db8:cafe::17]:4711"},
		{rec, []string{`for=198.51.100.9, for="[2001:db8:cafe::17]:4711"`}, "198.51.100.9:0"},
		{rec, []string{`for=192.0.2.43`, `for=10.0.0.2;proto=https`}, "192.0.2.43:0"},
		{rec, []string{`for=10.0.0.5, for=10.0.0.2`}, "10.0.0.5:0"},
		// unknown, obfuscated, no for=: the walk stops there.
		{last, []string{`for=unknown`}, ""},
		{rec, []string{`for=192.0.2.43, for=unknown, for=10.0.0.2`}, "10.0.0.2:0"},
		{rec, []string{`for="_gazonk", for=10.0.0.2`}, "10.0.0.2:0"},
		{rec, []string{`for=192.0.2.43, proto=https`}, ""},
		// Broken syntax in the right-most element (the proxy's own) gives
		// no client.
		{rec, []string{`for=192.0.2.43, for="10.0.0.2`}, ""},
		{rec, []string{`for=192.0.2.43`, `for=10.0.0.2;by`}, ""},
		{last, []string{`for=192.0.2.43, for=10.0.0.2;by`}, ""},
		// Elements are read right to left: a broken element stops the walk
		// where it stands, and the last good entry stands, as with a bad
		// X-Forwarded-For entry.
		{rec, []string{`for=192.0.2.43;by`, `for=10.0.0.2`}, "10.0.0.2:0"},
		{last, []string{`junk, for=203.0.113.7`}, "203.0.113.7:0"},
		{rec, []string{`junk, for=203.0.113.7`}, "203.0.113.7:0"},
		{rec, []string{`junk, for=10.0.0.7`}, "10.0.0.7:0"},
		{rec, []string{`for="junk, for=10.0.0.7`}, "10.0.0.7:0"},
		// A client's unclosed quote cannot swallow the proxy's element.
		{rec, []string{`for="a\", for=10.0.0.7`}, "10.0.0.7:0"},
		{last, []string{`for=192.0.2.1;by, for=203.0.113.7;proto=https`}, "203.0.113.7:0"},
		{rec, []string{`for=198.51.100.1, for=192.0.2.43:80, for=10.0.0.2`}, "10.0.0.2:0"},
		{rec, []string{`for=192.0.2.5, ,, for=10.0.0.2`}, "192.0.2.5:0"},
		{rec, []string{`for="a,b" , for=10.0.0.2`}, "10.0.0.2:0"},
		// IPv4-mapped entries are IPv4 clients.
		{last, []string{`for="[::ffff:203.0.113.7]:443"`}, "203.0.113.7:443"},
		{rec, []string{`for="[::ffff:198.51.100.7]", for="[::ffff:10.0.0.2]"`}, "198.51.100.7:0"},
	}
	for _, c := range cases {
		if got := walkString(c.c, c.lines); got != c.want {
			t.Errorf("%q recursive=%v: %q, want %q", c.lines, c.c.recursive, got, c.want)
		}
	}
}

// TestTrustedHops pins real_ip_trusted_hops down, beside Envoy's
// xff_num_trusted_hops and Traefik's ipStrategy.depth on their documented
// examples.
func TestTrustedHops(t *testing.T) {
	none, _, _ := ipset.Parse([]string{"192.168.99.99"}) // trusts no entry below
	tenNet, _, _ := ipset.Parse([]string{"10.0.0.0/8"})
	docNet, _, _ := ipset.Parse([]string{"203.0.113.0/24"})
	hops := func(n int, recursive bool, set *ipset.Set) chain {
		return chain{hops: n, recursive: recursive, trusted: set}
	}
	envoyXFF := []string{"203.0.113.128, 203.0.113.10, 203.0.113.1, 192.0.2.5"}
	traefikXFF := []string{"10.0.0.1,11.0.0.1,12.0.0.1,13.0.0.1"}
	cases := []struct {
		name  string
		c     chain
		lines []string
		want  string
	}{
		// Envoy, example 4 (use_remote_address false, xff_num_trusted_hops 2):
		// the (N+1)th address from the right, 203.0.113.10. The same here.
		{"Envoy example 4", hops(2, false, none), envoyXFF, "203.0.113.10:0"},
		// Envoy, example 3 (use_remote_address true, 2 hops): Envoy counts
		// the peer it appends as the first hop, so its N is our N-1.
		{"Envoy example 3", hops(1, false, none), []string{"203.0.113.128, 203.0.113.10, 203.0.113.1"}, "203.0.113.10:0"},
		// Envoy, example 2 (0 hops, use_remote_address false): the last one.
		{"Envoy example 2", hops(0, false, none), envoyXFF, "192.0.2.5:0"},
		// Fewer than N+1 entries: Envoy falls back to the peer, and so does
		// this (a bypassed hop would let the client's own entry be taken).
		{"shorter chain", hops(3, false, none), []string{"203.0.113.1, 192.0.2.5"}, ""},
		{"chain of exactly N", hops(2, false, none), []string{"203.0.113.1, 192.0.2.5"}, ""},
		{"chain of N+1", hops(1, false, none), []string{"203.0.113.1, 192.0.2.5"}, "203.0.113.1:0"},
		// Traefik's depth d is the d-th from the right: hops d-1, recursive
		// off (Traefik does not check the peer; here the peer must be
		// trusted). depth 1 → 13.0.0.1, depth 3 → 11.0.0.1; depth 5 is
		// past the chain: Traefik gives nothing, and neither does this.
		{"Traefik depth 1", hops(0, false, none), traefikXFF, "13.0.0.1:0"},
		{"Traefik depth 3", hops(2, false, none), traefikXFF, "11.0.0.1:0"},
		{"Traefik depth 5", hops(4, false, none), traefikXFF, ""},
		// With recursion, trusted entries left of the hops are skipped too.
		{"hops then recursive", hops(1, true, tenNet), []string{"203.0.113.7, 10.1.1.1, 10.2.2.2, 198.51.100.9"}, "203.0.113.7:0"},
		{"hops then recursive, untrusted next", hops(1, true, tenNet), []string{"203.0.113.7, 198.51.100.8, 198.51.100.9"}, "198.51.100.8:0"},
		// The hops are proxies whatever their address, even a trusted one.
		{"trusted entries inside the hops", hops(2, false, tenNet), []string{"203.0.113.7, 10.1.1.1, 10.2.2.2"}, "203.0.113.7:0"},
		{"all trusted with recursion", hops(1, true, tenNet), []string{"10.3.3.3, 10.2.2.2, 198.51.100.9"}, "10.3.3.3:0"},
		// Across lines, and with Forwarded.
		{"hops across lines", hops(2, false, none), []string{"203.0.113.7", "198.51.100.1, 198.51.100.2"}, "203.0.113.7:0"},
		{"Forwarded with hops", chain{forwarded: true, hops: 1, trusted: none}, []string{`for=203.0.113.7, for="[2001:db8::5]:443"`}, "203.0.113.7:0"},
		// An entry that does not parse stops the walk, inside the hops too;
		// what was taken is a hop, a proxy, so the peer stays the client.
		{"unparsable inside the hops", hops(2, false, none), []string{"203.0.113.7, unknown, 198.51.100.2"}, ""},
		{"no chain", hops(2, false, none), nil, ""},
		// The README's table.
		{"README: hops 2, recursive on, 203.0.113.0/24 trusted", hops(2, true, docNet), envoyXFF, "203.0.113.128:0"},
		{"README: hops 5", hops(5, false, none), envoyXFF, ""},
	}
	for _, c := range cases {
		if got := walkString(c.c, c.lines); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
