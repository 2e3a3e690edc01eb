package forwarded

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func TestParseEntry(t *testing.T) {
	good := map[string]string{
		"1.2.3.4":                        "1.2.3.4:0",
		"1.2.3.4:80":                     "1.2.3.4:80",
		"1.2.3.4:080":                    "1.2.3.4:80",
		"1.2.3.4:65535":                  "1.2.3.4:65535",
		"2001:db8::1":                    "[2001:db8::1]:0",
		"[2001:db8::1]:443":              "[2001:db8::1]:443",
		"::ffff:1.2.3.4":                 "[::ffff:1.2.3.4]:0",
		"[::ffff:1.2.3.4]:8080":          "[::ffff:1.2.3.4]:8080",
		"2001:db8::1:80":                 "[2001:db8::1:80]:0", // an IPv6 address, not a port
		"0.0.0.0":                        "0.0.0.0:0",
		"255.255.255.255":                "255.255.255.255:0",
		"2001:0db8:0000:0000:0000::0001": "[2001:db8::1]:0",
	}
	for in, want := range good {
		e, ok := ParseEntry(in)
		if !ok {
			t.Errorf("%q: does not parse", in)
			continue
		}
		if got := netip.AddrPortFrom(e.Addr, e.Port).String(); got != want {
			t.Errorf("%q: got %s want %s", in, got, want)
		}
	}
	bad := []string{
		"", "unknown", "_hidden", "_obfuscated:1", "\"1.2.3.4\"", "1.2.3.4:0", "1.2.3.4:65536",
		"1.2.3.4:", "1.2.3.4:-1", "1.2.3.4:+80", "1.2.3.4:80:80", "[2001:db8::1]", "[2001:db8::1]:",
		"[2001:db8::1]:0", "[1.2.3.4]:80", "2001:db8::1%eth0", "[fe80::1%eth0]:80", "1.2.3",
		"01.2.3.4", "1..2.3", "1.2.3.4.5", "256.1.1.1", "[2001:db8::1", "2001:db8::1]:80",
		"1.2.3.4 ", " 1.2.3.4", "1.2.3.4\t", "[2001:db8::1]x80", "example.com", "example.com:80",
		"1.2.3.4:99999999999999999999",
	}
	for _, in := range bad {
		if e, ok := ParseEntry(in); ok {
			t.Errorf("%q: parsed as %v", in, e)
		}
	}
}

func TestLastToken(t *testing.T) {
	cases := []struct {
		line, token string
		start       int
	}{
		{"", "", 0},
		{"1.2.3.4", "1.2.3.4", 0},
		{"a, b", "b", 3},
		{"a,b", "b", 2},
		{"a b", "b", 2},
		{"a, b, ", "b", 3},
		{"a,,b", "b", 3},
		{",", ",", 0},
		{", ", ",", 0},
		{" ,b", "b", 2},
		{"a ,", "a", 0},
	}
	for _, c := range cases {
		tok, start := LastToken(c.line)
		if tok != c.token || start != c.start {
			t.Errorf("%q: got (%q, %d) want (%q, %d)", c.line, tok, start, c.token, c.start)
		}
	}
}

func TestParseEntryDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		ParseEntry("[2001:db8::1]:443")
		ParseEntry("1.2.3.4:80")
		ParseEntry("unknown")
	}); n != 0 {
		t.Errorf("allocates %v times", n)
	}
}

// referenceEntry is ParseEntry's rules written plainly on netip, slow and
// obviously right, for the fuzzer to compare the fast reader with.
func referenceEntry(s string) (Entry, bool) {
	port := func(p string) (uint16, bool) {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseUint(p, 10, 16)
		return uint16(n), err == nil && n > 0
	}
	switch {
	case strings.HasPrefix(s, "["):
		host, p, found := strings.Cut(s[1:], "]:")
		a, err := netip.ParseAddr(host)
		n, ok := port(p)
		if !found || err != nil || !a.Is6() || a.Zone() != "" || !ok {
			return Entry{}, false
		}
		return Entry{Addr: a, Port: n}, true
	case strings.Count(s, ":") == 1:
		host, p, _ := strings.Cut(s, ":")
		a, err := netip.ParseAddr(host)
		n, ok := port(p)
		if err != nil || !a.Is4() || !ok {
			return Entry{}, false
		}
		return Entry{Addr: a, Port: n}, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return Entry{}, false
	}
	return Entry{Addr: a}, true
}

func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4:80", "[2001:db8::1]:443", "unknown", "[", "1.2.3.4:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := ParseEntry(s)
		if want, wantOK := referenceEntry(s); ok != wantOK || e != want {
			t.Fatalf("%q: %v %v, the reference reads %v %v", s, e, ok, want, wantOK)
		}
		if !ok {
			return
		}
		if !e.Addr.IsValid() || e.Addr.Zone() != "" {
			t.Fatalf("%q: invalid address %v", s, e.Addr)
		}
		// What parses must print back to something that parses to the same.
		text := e.Addr.String()
		if e.Port != 0 {
			text = netip.AddrPortFrom(e.Addr, e.Port).String()
		}
		e2, ok := ParseEntry(text)
		if !ok || e2 != e {
			t.Fatalf("%q -> %q -> %v %v", s, text, e2, ok)
		}
	})
}

func FuzzLastToken(f *testing.F) {
	for _, s := range []string{"", "a, b", ",", " ,b", "1.2.3.4, 5.6.7.8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for len(line) > 0 {
			tok, start := LastToken(line)
			if start < 0 || start > len(line) || start+len(tok) > len(line) || line[start:start+len(tok)] != tok {
				t.Fatalf("%q: token %q at %d", line, tok, start)
			}
			if start == 0 {
				return
			}
			line = line[:start-1]
		}
	})
}

// FuzzParseIPv4 checks the hand-written IPv4 reader against netip's.
func FuzzParseIPv4(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "010.0.0.1", "255.255.255.255", "256.1.1.1", "1..2.3", "1.2.3", "1.2.3.4.5", "0.0.0.0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok, isV4 := parseIPv4(s)
		want, err := netip.ParseAddr(s)
		wantOK := err == nil && want.Is4()
		if isV4 && ok != wantOK {
			t.Fatalf("%q: parseIPv4 %v %v, netip %v %v", s, a, ok, want, err)
		}
		if ok && a != want {
			t.Fatalf("%q: %v, netip %v", s, a, want)
		}
		if !isV4 && wantOK {
			t.Fatalf("%q: not taken as IPv4, netip reads %v", s, want)
		}
		if isV4 && strings.Trim(s, "0123456789.") != "" {
			t.Fatalf("%q: taken as IPv4 text although it has other characters", s)
		}
	})
}

var sinkEntry Entry

func BenchmarkParseEntry(b *testing.B) {
	for _, s := range []string{"198.51.100.1", "198.51.100.1:4711", "2001:db8::1", "[2001:db8::1]:443"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				sinkEntry, _ = ParseEntry(s)
			}
		})
	}
}
