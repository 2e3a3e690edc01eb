package ipset

import "testing"

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
