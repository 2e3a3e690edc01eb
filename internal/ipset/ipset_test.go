package ipset

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseAndContains(t *testing.T) {
	cases := []struct {
		tokens []string
		in     []string
		out    []string
		unix   bool
	}{
		{[]string{"10.0.0.0/8"}, []string{"10.0.0.1", "10.255.255.255", "::ffff:10.1.2.3"}, []string{"11.0.0.1", "9.255.255.255", "::1", "2001:db8::1"}, false},
		{[]string{"192.168.1.7"}, []string{"192.168.1.7", "::ffff:192.168.1.7"}, []string{"192.168.1.8", "192.168.1.6"}, false},
		{[]string{"2001:db8::/32"}, []string{"2001:db8::1", "2001:db8:ffff::1"}, []string{"2001:db9::1", "10.0.0.1"}, false},
		{[]string{"2001:db8::5"}, []string{"2001:db8::5", "2001:db8::5%eth0"}, []string{"2001:db8::6"}, false},
		{[]string{"unix:"}, nil, []string{"127.0.0.1", "::1"}, true},
		{[]string{"0.0.0.0/0"}, []string{"1.2.3.4", "255.255.255.255", "::ffff:1.1.1.1"}, []string{"::1"}, false},
		{[]string{"0.0.0.0/0,::/0"}, []string{"1.2.3.4", "::1", "2001:db8::1"}, nil, false},
		{[]string{"10.0.0.0/8, 172.16.0.0/12", "unix:"}, []string{"172.31.255.255", "10.9.9.9"}, []string{"172.32.0.0"}, true},
		{[]string{"private_ranges"}, []string{"10.1.1.1", "172.16.0.1", "192.168.0.1", "127.0.0.1", "fd00::1", "::1"}, []string{"8.8.8.8", "2001:db8::1"}, false},
		{[]string{"::ffff:10.0.0.0/104"}, []string{"10.1.1.1", "::ffff:10.2.2.2"}, []string{"11.0.0.0"}, false},
		{[]string{"::ffff:10.0.0.1"}, []string{"10.0.0.1"}, []string{"10.0.0.2"}, false},
		{[]string{"1.2.3.4/32", "1.2.3.0/24", "1.2.0.0/16"}, []string{"1.2.3.4", "1.2.3.5", "1.2.200.1"}, []string{"1.3.0.0"}, false},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.tokens, "|"), func(t *testing.T) {
			s, _, err := Parse(c.tokens)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range c.in {
				if !s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s: want trusted", a)
				}
			}
			for _, a := range c.out {
				if s.Contains(netip.MustParseAddr(a)) {
					t.Errorf("%s: want untrusted", a)
				}
			}
			if s.ContainsUnix() != c.unix || s.ContainsPeer(netip.AddrPort{}, true) != c.unix {
				t.Errorf("unix: got %v want %v", s.ContainsUnix(), c.unix)
			}
			for _, a := range c.in {
				if !s.ContainsPeer(netip.AddrPortFrom(netip.MustParseAddr(a), 443), false) {
					t.Errorf("%s:443: want a trusted peer", a)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "1.2.3", "1.2.3.4/", "fe80::1%eth0", "unix", "01.2.3.4", "1.2.3.4/-1", "::/129", "10.0.0.1-10.0.0.9", "*"} {
		_, _, err := Parse([]string{"10.0.0.1", bad})
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: want *Error, got %v", bad, err)
			continue
		}
		want := fmt.Sprintf("trusted_ips must be a comma separated list in the form of IPv4 or IPv6 address or CIDR block or 'unix:', got '%s'", bad)
		if err.Error() != want {
			t.Errorf("%q: message %q", bad, err.Error())
		}
	}
}

func TestHostBitsMaskedWithWarning(t *testing.T) {
	s, warns, err := Parse([]string{"10.1.2.3/8", "2001:db8::1/32", "192.168.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 {
		t.Fatalf("want 2 warnings, got %v", warns)
	}
	if warns[0].Masked.String() != "10.0.0.0/8" || warns[1].Masked.String() != "2001:db8::/32" {
		t.Errorf("masked: %v", warns)
	}
	if !strings.Contains(warns[0].String(), "10.1.2.3/8") {
		t.Errorf("warning does not name the entry: %s", warns[0])
	}
	if !s.Contains(netip.MustParseAddr("10.200.0.1")) {
		t.Error("masked range does not match")
	}
}

func TestExpand(t *testing.T) {
	got := Expand([]string{"10.0.0.1,10.0.0.2", " 10.0.0.3 ,, ", "", "unix:"})
	want := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "unix:"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v want %v", got, want)
	}
	if s, _, err := Parse([]string{""}); err != nil || !s.Empty() {
		t.Errorf("empty token: %v %v", s, err)
	}
}

func TestContainsDoesNotAllocate(t *testing.T) {
	s := setOfSize(1000)
	s6, _, _ := Parse([]string{"2001:db8::/64", "2001:db8:1::/48"})
	a := netip.MustParseAddr("10.0.3.7")
	b := netip.MustParseAddr("2001:db8::7")
	if n := testing.AllocsPerRun(100, func() { s.Contains(a); s6.Contains(b) }); n != 0 {
		t.Errorf("Contains allocates %v times", n)
	}
}

// setOfSize returns n /32 entries in 10.0.0.0/8.
func setOfSize(n int) *Set {
	tokens := make([]string, 0, n)
	for i := 0; i < n; i++ {
		tokens = append(tokens, fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	s, _, err := Parse(tokens)
	if err != nil {
		panic(err)
	}
	return s
}

func benchmarkContains(b *testing.B, n int) {
	s := setOfSize(n)
	hit := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", (n-1)>>16&255, (n-1)>>8&255, (n-1)&255))
	miss := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !s.Contains(hit) || s.Contains(miss) {
			b.Fatal("wrong answer")
		}
	}
}

func BenchmarkContains1(b *testing.B)     { benchmarkContains(b, 1) }
func BenchmarkContains100(b *testing.B)   { benchmarkContains(b, 100) }
func BenchmarkContains10000(b *testing.B) { benchmarkContains(b, 10000) }

// BenchmarkContainsPrivateRanges is Caddy's private_ranges: six prefix
// lengths over both families, a miss (the common case for a public client).
func BenchmarkContainsPrivateRanges(b *testing.B) {
	s, _, _ := Parse([]string{"private_ranges"})
	a := netip.MustParseAddr("203.0.113.9")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Contains(a)
	}
}

// TestAgainstLinearScan checks the hash tables against the obvious
// implementation on random prefixes of every length.
func TestAgainstLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.IntN(4)) // few distinct values, so prefixes collide
			}
			b[0] = 0x20
			return netip.AddrFrom16(b)
		}
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.IntN(4))
		}
		return netip.AddrFrom4(b)
	}
	for round := 0; round < 50; round++ {
		var tokens []string
		var prefixes []netip.Prefix
		for i := 0; i < 1+rng.IntN(60); i++ {
			v6 := rng.IntN(2) == 0
			a := randAddr(v6)
			bits := 1 + rng.IntN(a.BitLen())
			p := netip.PrefixFrom(a, bits).Masked()
			tokens = append(tokens, p.String())
			prefixes = append(prefixes, p)
		}
		s, _, err := Parse(tokens)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2000; i++ {
			a := randAddr(rng.IntN(2) == 0)
			want := false
			for _, p := range prefixes {
				if p.Contains(a) {
					want = true
					break
				}
			}
			if got := s.Contains(a); got != want {
				t.Fatalf("%s in %v: got %v want %v", a, tokens, got, want)
			}
		}
	}
}

func TestBuild(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	if _, err := Build([]string{"", " , "}, false, zap.New(core)); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty list: %v", err)
	}
	// With IP sources, an empty list is the start of a set they fill.
	if s, err := Build(nil, true, zap.New(core)); err != nil || s == nil || !s.Empty() {
		t.Errorf("empty list with sources: %v %v", s, err)
	}
	if _, err := Build([]string{"10.0.0.1", "x"}, true, zap.New(core)); err == nil || !strings.Contains(err.Error(), "got 'x'") {
		t.Errorf("bad entry: %v", err)
	}
	s, err := Build([]string{"10.9.9.9/8"}, false, zap.New(core))
	if err != nil || !s.Contains(netip.MustParseAddr("10.1.1.1")) {
		t.Fatalf("%v %v", s, err)
	}
	if logs.Len() != 1 || !strings.Contains(logs.All()[0].Message, "'10.9.9.9/8' has host bits set; using 10.0.0.0/8") {
		t.Errorf("warnings logged: %v", logs.All())
	}
}
