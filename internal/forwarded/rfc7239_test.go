package forwarded

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestForwardedFor(t *testing.T) {
	cases := []struct {
		line string
		want []string // nil with ok false: the line does not parse
		ok   bool
	}{
		// RFC 7239's own examples (sections 4, 6 and 7).
		{`for="_gazonk"`, []string{"_gazonk"}, true},
		{`For="[2001:db8:cafe::17]:4711"`, []string{"[2001:db8:cafe::17]:4711"}, true},
		{`for=192.0.2.60;proto=http;by=203.0.113.43`, []string{"192.0.2.60"}, true},
		{`for=192.0.2.43, for=198.51.100.17`, []string{"192.0.2.43", "198.51.100.17"}, true},
		{`for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown`, []string{"192.0.2.43", "[2001:db8:cafe::17]", "unknown"}, true},
		{`for=unknown`, []string{"unknown"}, true},
		{`for="_mdn"`, []string{"_mdn"}, true},
		// Parameter names are case-insensitive; the order of pairs is free.
		{`proto=https;FOR=198.51.100.1;host=example.com`, []string{"198.51.100.1"}, true},
		// Elements without for= contribute an entry that does not parse.
		{`proto=https, for=198.51.100.1`, []string{"", "198.51.100.1"}, true},
		{`by=10.0.0.1`, []string{""}, true},
		// Empty list elements and empty pairs are skipped.
		{`for=198.51.100.1, , for=198.51.100.2`, []string{"198.51.100.1", "198.51.100.2"}, true},
		{`;for=198.51.100.1;;proto=http`, []string{"198.51.100.1"}, true},
		{``, nil, true},
		// A second for= or an escape in the value: the element does not parse.
		{`for=198.51.100.1;for=198.51.100.2`, []string{""}, true},
		{`for="198.51.100.\1"`, []string{""}, true},
		// A comma inside quotes does not split.
		{`for="198.51.100.1";host="a,b", for=198.51.100.2`, []string{"198.51.100.1", "198.51.100.2"}, true},
		// Broken syntax: the line does not parse as a whole.
		{`for="198.51.100.1`, nil, false},
		{`for=198.51.100.1;proto`, nil, false},
		{`for`, nil, false},
		{`for=`, nil, false},
		{`=198.51.100.1`, nil, false},
		{`for=192.0.2.43:80`, nil, false}, // ':' is not a token character: the RFC quotes such values
		{`for=[2001:db8::1]`, nil, false},
		{`for = 198.51.100.1`, nil, false},
		{`for=198.51.100.1 proto=http`, nil, false},
	}
	for _, c := range cases {
		got, ok := ForwardedFor(c.line, nil)
		if ok != c.ok || (ok && !slices.Equal(got, c.want)) {
			t.Errorf("%q: %q %v, want %q %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestParseNode(t *testing.T) {
	cases := map[string]string{ // value → "addr:port", or "" for does not parse
		"192.0.2.43":               "192.0.2.43:0",
		"192.0.2.43:4711":          "192.0.2.43:4711",
		"192.0.2.43:_ab-c":         "192.0.2.43:0", // an obfuscated port keeps the address
		"[2001:db8:cafe::17]":      "[2001:db8:cafe::17]:0",
		"[2001:db8:cafe::17]:4711": "[2001:db8:cafe::17]:4711",
		"[2001:db8:cafe::17]:_x":   "[2001:db8:cafe::17]:0",
		"unknown":                  "",
		"_gazonk":                  "",
		"_hidden:80":               "",
		"2001:db8::17":             "", // IPv6 without brackets
		"[192.0.2.1]":              "",
		"[2001:db8::1":             "",
		"[2001:db8::1]80":          "",
		"[fe80::1%eth0]":           "",
		"192.0.2.43:0":             "",
		"192.0.2.43:65536":         "",
		"192.0.2.43:":              "",
		"192.0.2.43:_":             "",
		"010.0.0.1":                "",
		"":                         "",
	}
	for in, want := range cases {
		e, ok := ParseNode(in)
		got := ""
		if ok {
			got = netip.AddrPortFrom(e.Addr, e.Port).String()
		}
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestForwardedForDoesNotAllocate(t *testing.T) {
	var buf [16]string
	line := `for=192.0.2.43;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1, for=198.51.100.17`
	if n := testing.AllocsPerRun(100, func() {
		fors, _ := ForwardedFor(line, buf[:0])
		for _, f := range fors {
			ParseNode(f)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzForwardedFor: arbitrary lines never panic; every value returned is a
// substring of the line, and a node that parses is an address of it.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{`for=192.0.2.60;proto=http;by=203.0.113.43`, `for="[2001:db8:cafe::17]:4711"`,
		`for=192.0.2.43, for=198.51.100.17`, `for="_gazonk"`, `for="a,b";x="\"", for=unknown`, `;,;,`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fors, ok := ForwardedFor(line, nil)
		if !ok {
			return
		}
		for _, v := range fors {
			if !strings.Contains(line, v) {
				t.Fatalf("%q: value %q is not in the line", line, v)
			}
			if e, ok := ParseNode(v); ok && !e.Addr.IsValid() {
				t.Fatalf("%q: node %q parsed to an invalid address", line, v)
			}
		}
	})
}

func TestLastElement(t *testing.T) {
	cases := []struct {
		line, elem string
		start      int
		ok         bool
	}{
		{`for=a, for=b`, ` for=b`, 6, true},
		{`for=a`, `for=a`, 0, true},
		{`for="a,b", for=c`, ` for=c`, 10, true},
		{`for=c, for="a,b"`, ` for="a,b"`, 6, true},
		{`junk, for="x`, `junk, for="x`, 0, false},
		{`for="a\"", for=c`, ` for=c`, 10, true},
		{`for="a\", for=c`, ` for=c`, 9, true},
		{``, ``, 0, true},
	}
	for _, c := range cases {
		elem, start, ok := LastElement(c.line)
		if elem != c.elem || start != c.start || ok != c.ok {
			t.Errorf("%q: %q %d %v, want %q %d %v", c.line, elem, start, ok, c.elem, c.start, c.ok)
		}
	}
}

// FuzzLastElement: splitting a line element by element, right to left,
// ends, and the pieces put back together are the line.
func FuzzLastElement(f *testing.F) {
	for _, s := range []string{`for=a, for=b`, `for="a,b", for=c`, `junk, for="x`, `for="a\"", for=c`, `,,,`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var pieces []string
		rest := line
		for n := 0; ; n++ {
			if n > len(line)+1 {
				t.Fatalf("%q: no end", line)
			}
			elem, start, ok := LastElement(rest)
			if start < 0 || start > len(rest) || rest[start:] != elem {
				t.Fatalf("%q: element %q at %d", rest, elem, start)
			}
			pieces = append([]string{elem}, pieces...)
			if !ok || start == 0 {
				if start != 0 {
					t.Fatalf("%q: broken element not at the start", rest)
				}
				break
			}
			rest = rest[:start-1]
		}
		if got := strings.Join(pieces, ","); got != line {
			t.Fatalf("%q: pieces %q", line, pieces)
		}
	})
}
