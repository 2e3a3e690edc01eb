package ipset

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// CoversAllIPv4 reports whether the entries together trust every IPv4
// address: 0.0.0.0/0, or ranges that add up to it (0.0.0.0/1 and
// 128.0.0.0/1, say).
func (s *Set) CoversAllIPv4() bool { return s != nil && covers(s.prefixes, true) }

// CoversAllIPv6 is CoversAllIPv4 for IPv6 (::/0).
func (s *Set) CoversAllIPv6() bool { return s != nil && covers(s.prefixes, false) }

// TrustsTCP reports whether any TCP peer can be trusted at all.
func (s *Set) TrustsTCP() bool { return s != nil && len(s.prefixes) > 0 }

// covers merges the prefixes of one family, lowest first, and reports
// whether they leave no gap from the first address to the last.
func covers(prefixes []netip.Prefix, v4 bool) bool {
	var ps []netip.Prefix
	for _, p := range prefixes {
		if p.Addr().Is4() == v4 {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return false
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	next := netip.IPv6Unspecified()
	if v4 {
		next = netip.IPv4Unspecified()
	}
	for _, p := range ps {
		if p.Addr().Compare(next) > 0 {
			return false // a gap before p
		}
		last := lastAddr(p)
		if !last.Next().IsValid() {
			return true // p reaches the family's last address
		}
		if last.Next().Compare(next) > 0 {
			next = last.Next()
		}
	}
	return false
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Audit checks a trust list against the listen addresses of the server it
// judges peers on (Caddy's network addresses: "unix//path", ":443", ...).
// It returns warnings for lists that trust every address of a family, and
// an error for a list that can never trust any peer of that server.
func (s *Set) Audit(listen []string) (warnings []string, err error) {
	const open = "any client that can reach this port directly can choose its own address: " +
		"make sure only the load balancer can reach it (a firewall, security group or NetworkPolicy), or list only the balancer's addresses"
	switch {
	case s.CoversAllIPv4() && s.CoversAllIPv6():
		warnings = append(warnings, "trusted_ips covers every IPv4 and IPv6 address; "+open)
	case s.CoversAllIPv4():
		warnings = append(warnings, "trusted_ips covers every IPv4 address; "+open)
	case s.CoversAllIPv6():
		warnings = append(warnings, "trusted_ips covers every IPv6 address; "+open)
	}
	var unixListen, tcpListen []string
	for _, l := range listen {
		if strings.HasPrefix(l, "unix") { // unix, unixgram, unixpacket, unix+h2c
			unixListen = append(unixListen, l)
		} else {
			tcpListen = append(tcpListen, l)
		}
	}
	switch {
	case len(listen) == 0:
	case len(tcpListen) == 0 && !s.ContainsUnix():
		err = fmt.Errorf("trusted_ips has no unix:, but this server listens only on UNIX sockets (%s), whose peers only unix: can trust, so nothing can ever be trusted: add unix: to trusted_ips",
			strings.Join(unixListen, " "))
	case len(unixListen) == 0 && !s.TrustsTCP():
		err = fmt.Errorf("trusted_ips has only unix:, but this server listens only on TCP (%s), so nothing can ever be trusted: list the addresses or CIDRs of the load balancers",
			strings.Join(tcpListen, " "))
	}
	return warnings, err
}

// ipv4InIPv6 are the IPv6 ranges that hold a copy of the whole IPv4 space:
// IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96, deprecated but still
// parsed) and the NAT64 well-known prefix (64:ff9b::/96). An IPv6 range that
// contains one of them trusts, in one form or another, every IPv4 client.
var ipv4InIPv6 = []netip.Prefix{
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b::/96"),
}

// CoversEveryAddress reports whether ranges, taken together, contain every
// IPv4 address (v4) or every IPv6 address (v6). IPv4-mapped ranges count as
// the IPv4 ranges they match, and an IPv6 range that holds a whole copy of
// the IPv4 space (see ipv4InIPv6) counts as covering IPv4. It is how a
// range list that would trust everyone is recognised, however it is
// written.
func CoversEveryAddress(ranges []netip.Prefix) (v4, v6 bool) {
	norm := make([]netip.Prefix, 0, len(ranges))
	for _, p := range ranges {
		if !p.IsValid() {
			continue
		}
		p = unmapPrefix(p).Masked()
		norm = append(norm, p)
		if p.Addr().Is6() && !v4 {
			for _, embedded := range ipv4InIPv6 {
				if p.Bits() <= embedded.Bits() && p.Contains(embedded.Addr()) {
					v4 = true
				}
			}
		}
	}
	return v4 || covers(norm, true), covers(norm, false)
}
