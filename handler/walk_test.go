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
		e, ok := walk(c.lines, c.recursive, trusted, nil)
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
	if n := testing.AllocsPerRun(100, func() { walk(lines, true, trusted, nil) }); n != 0 {
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
		e, ok := walk(lines, recursive, trusted, nil)
		var steps []Step
		if te, tok := walk(lines, recursive, trusted, &steps); te != e || tok != ok {
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
				e, ok := walk(lines, true, trusted, nil)
				if !ok || e.Addr != want {
					b.Fatalf("walk: %v %v", e, ok)
				}
			}
		})
	}
}
