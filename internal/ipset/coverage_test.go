package ipset

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCoverage(t *testing.T) {
	cases := []struct {
		entries    []string
		all4, all6 bool
	}{
		{[]string{"0.0.0.0/0"}, true, false},
		{[]string{"::/0"}, false, true},
		{[]string{"0.0.0.0/0,::/0"}, true, true},
		{[]string{"0.0.0.0/1", "128.0.0.0/1"}, true, false},
		{[]string{"128.0.0.0/1", "0.0.0.0/2", "64.0.0.0/2"}, true, false},
		{[]string{"0.0.0.0/1", "128.0.0.0/2"}, false, false},
		{[]string{"0.0.0.0/1", "192.0.0.0/2"}, false, false},
		{[]string{"10.0.0.0/8", "private_ranges"}, false, false},
		{[]string{"::/1", "8000::/1"}, false, true},
		{[]string{"::/1", "8000::/2"}, false, false},
		{[]string{"255.255.255.255", "0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4", "240.0.0.0/5", "248.0.0.0/6",
			"252.0.0.0/7", "254.0.0.0/8", "255.0.0.0/9", "255.128.0.0/9"}, true, false},
		{[]string{"unix:"}, false, false},
	}
	for _, c := range cases {
		s, _, err := Parse(c.entries)
		if err != nil {
			t.Fatal(err)
		}
		if s.CoversAllIPv4() != c.all4 || s.CoversAllIPv6() != c.all6 {
			t.Errorf("%v: covers v4 %v v6 %v, want %v %v", c.entries, s.CoversAllIPv4(), s.CoversAllIPv6(), c.all4, c.all6)
		}
	}
}

func TestCoversEveryAddress(t *testing.T) {
	cases := []struct {
		ranges     string
		all4, all6 bool
	}{
		{"0.0.0.0/0", true, false},
		{"::/0", true, true}, // ::/0 holds ::ffff:0:0/96 as well
		{"0.0.0.0/1 128.0.0.0/1", true, false},
		{"::ffff:0.0.0.0/96", true, false},
		{"::ffff:0.0.0.0/97 128.0.0.0/1", true, false},
		{"::ffff:0:0/95", true, false},
		{"::/64", true, false},
		{"::/96", true, false},
		{"64:ff9b::/96", true, false},
		{"::/1 8000::/1", true, true},
		{"8000::/1 ::/1", true, true},
		{"4000::/2 8000::/1 ::/2", true, true},
		{"2000::/3 4000::/2 8000::/1", false, false}, // ::/3 missing
		{"::ffff:0.0.0.0/97", false, false},
		{"64:ff9b::/97", false, false},
		{"0.0.0.0/1 128.0.0.0/2", false, false},
		{"173.245.48.0/20 2400:cb00::/32", false, false},
		{"", false, false},
	}
	for _, c := range cases {
		var ranges []netip.Prefix
		for _, f := range strings.Fields(c.ranges) {
			ranges = append(ranges, netip.MustParsePrefix(f))
		}
		v4, v6 := CoversEveryAddress(ranges)
		if v4 != c.all4 || v6 != c.all6 {
			t.Errorf("%q: covers v4 %v v6 %v, want %v %v", c.ranges, v4, v6, c.all4, c.all6)
		}
	}
}

// BenchmarkCoversEveryAddress100k is the published source's guard on a
// 100,000-range list, run once per download, off the request path.
func BenchmarkCoversEveryAddress100k(b *testing.B) {
	var ranges []netip.Prefix
	for _, s := range randomPrefixes(100_000, 1) {
		ranges = append(ranges, netip.MustParsePrefix(s).Masked())
	}
	for b.Loop() {
		CoversEveryAddress(ranges) // random lists of this size do cover all of IPv4: many /8s
	}
}
