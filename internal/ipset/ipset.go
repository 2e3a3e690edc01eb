// Package ipset holds the trusted-address set shared by the real_ip listener
// wrapper and the real_ip HTTP handler: Kong's trusted_ips, nginx's
// set_real_ip_from.
//
// A Set is immutable once built, so it can be rebuilt off the hot path (for
// example from ranges that change at runtime) and swapped atomically.
package ipset

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Token values with a meaning of their own.
const (
	// Unix trusts every peer on a UNIX domain socket (nginx's "unix:").
	Unix = "unix:"
	// PrivateRanges is Caddy's shorthand for the private and loopback ranges.
	PrivateRanges = "private_ranges"
)

// Set answers "is this peer trusted?" in a time that depends on the number of
// distinct prefix lengths in it (at most 32 for IPv4 and 128 for IPv6), never
// on the number of entries: each length has its own fixed-cost hash table of
// masked addresses (table.go). netip and Caddy have no such structure (Caddy
// scans a slice of prefixes), so it is written here.
type Set struct {
	all4, all6 bool // 0.0.0.0/0 or ::/0 present
	unix       bool

	v4 []lenSet4 // longest prefix first
	v6 []lenSet6

	prefixes []netip.Prefix // normalised entries, for String and tests
}

type lenSet4 struct {
	mask  uint32
	addrs table4
}

// lenSet6 keeps the mask as two words so that masking needs no branches.
type lenSet6 struct {
	mask  key6
	addrs table6
}

// Warning reports an entry that was accepted after a change, such as a CIDR
// whose host bits were set and have been cleared (nginx warns the same way).
type Warning struct {
	Entry  string
	Masked netip.Prefix
}

func (w Warning) String() string {
	return fmt.Sprintf("trusted_ips entry '%s' has host bits set; using %s", w.Entry, w.Masked)
}

// Error is a trusted_ips entry that does not parse. Its message is Kong's.
type Error struct {
	Entry string
}

func (e *Error) Error() string {
	return fmt.Sprintf("trusted_ips must be a comma separated list in the form of IPv4 or IPv6 address or CIDR block or 'unix:', got '%s'", e.Entry)
}

// Expand splits tokens on commas and white space, as Kong splits
// KONG_TRUSTED_IPS, and expands private_ranges. Empty pieces are dropped, so
// "a, b," and an environment variable that expands to nothing both work.
func Expand(tokens []string) []string {
	var out []string
	for _, tok := range tokens {
		for _, piece := range strings.FieldsFunc(tok, func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
		}) {
			if piece == PrivateRanges {
				out = append(out, caddyhttp.PrivateRangesCIDR()...)
				continue
			}
			out = append(out, piece)
		}
	}
	return out
}

// ErrEmpty is returned by Build for a list that trusts nothing.
var ErrEmpty = errors.New("trusted_ips is required")

// Build is Parse for a module's Provision: warnings go to logger, and an
// empty list is ErrEmpty.
func Build(tokens []string, logger *zap.Logger) (*Set, error) {
	s, warnings, err := Parse(tokens)
	if err != nil {
		return nil, err
	}
	if s.Empty() {
		return nil, ErrEmpty
	}
	for _, w := range warnings {
		logger.Warn(w.String())
	}
	return s, nil
}

// Parse builds a Set from trusted_ips tokens (see Expand for the token
// syntax). It returns the first bad entry as an *Error, and a Warning for
// each CIDR whose host bits were masked.
func Parse(tokens []string) (*Set, []Warning, error) {
	s := &Set{}
	var warnings []Warning
	v4 := map[int]map[uint32]struct{}{}
	v6 := map[int]map[key6]struct{}{}
	for _, entry := range Expand(tokens) {
		if entry == Unix {
			s.unix = true
			continue
		}
		p, masked, err := parseEntry(entry)
		if err != nil {
			return nil, nil, err
		}
		if masked {
			warnings = append(warnings, Warning{Entry: entry, Masked: p})
		}
		s.prefixes = append(s.prefixes, p)
		bits := p.Bits()
		if p.Addr().Is4() {
			if bits == 0 {
				s.all4 = true
				continue
			}
			if v4[bits] == nil {
				v4[bits] = map[uint32]struct{}{}
			}
			v4[bits][be32(p.Addr().As4())] = struct{}{}
			continue
		}
		if bits == 0 {
			s.all6 = true
			continue
		}
		if v6[bits] == nil {
			v6[bits] = map[key6]struct{}{}
		}
		v6[bits][toKey6(p.Addr())] = struct{}{}
	}
	for bits := 32; bits >= 1; bits-- {
		if m := v4[bits]; m != nil {
			s.v4 = append(s.v4, lenSet4{mask: ^uint32(0) << (32 - bits), addrs: newTable4(m)})
		}
	}
	for bits := 128; bits >= 1; bits-- {
		if m := v6[bits]; m != nil {
			s.v6 = append(s.v6, lenSet6{mask: mask6(bits), addrs: newTable6(m)})
		}
	}
	return s, warnings, nil
}

// parseEntry reads one address or CIDR. An IPv4-mapped IPv6 entry
// (::ffff:10.0.0.0/104) is stored as its IPv4 equivalent, so it matches the
// same peers as the IPv4 form.
func parseEntry(entry string) (netip.Prefix, bool, error) {
	if strings.Contains(entry, "/") {
		p, err := netip.ParsePrefix(entry)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, false, &Error{Entry: entry}
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		m := p.Masked()
		return m, m != p, nil
	}
	a, err := netip.ParseAddr(entry)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false, &Error{Entry: entry}
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), false, nil
}

func toKey6(a netip.Addr) key6 {
	b := a.As16()
	return key6{hi: be64(b[:8]), lo: be64(b[8:])}
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func mask6(bits int) key6 {
	var m key6
	if bits >= 64 {
		m.hi = ^uint64(0)
		m.lo = ^uint64(0) << (128 - bits)
		if bits == 64 {
			m.lo = 0
		}
	} else {
		m.hi = ^uint64(0) << (64 - bits)
	}
	return m
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Contains reports whether addr is trusted. IPv4-mapped IPv6 addresses match
// IPv4 entries. It does not allocate.
func (s *Set) Contains(addr netip.Addr) bool {
	if s == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	if addr.Is4() {
		if s.all4 {
			return true
		}
		a := be32(addr.As4())
		for i := range s.v4 {
			if s.v4[i].addrs.contains(a & s.v4[i].mask) {
				return true
			}
		}
		return false
	}
	if s.all6 {
		return true
	}
	k := toKey6(addr)
	for i := range s.v6 {
		m := s.v6[i].mask
		if s.v6[i].addrs.contains(key6{k.hi & m.hi, k.lo & m.lo}) {
			return true
		}
	}
	return false
}

// ContainsPeer reports whether a socket peer is trusted: a peer on a UNIX
// domain socket (unix) by "unix:", any other by its address.
func (s *Set) ContainsPeer(peer netip.AddrPort, unix bool) bool {
	if unix {
		return s.ContainsUnix()
	}
	return s.Contains(peer.Addr())
}

// ContainsUnix reports whether peers on UNIX domain sockets are trusted.
func (s *Set) ContainsUnix() bool { return s != nil && s.unix }

// Empty reports whether the set trusts nothing at all.
func (s *Set) Empty() bool {
	return s == nil || (!s.unix && len(s.prefixes) == 0)
}

// Prefixes returns the normalised address entries (unix: excluded).
func (s *Set) Prefixes() []netip.Prefix { return append([]netip.Prefix(nil), s.prefixes...) }

// String lists the normalised entries, for logs.
func (s *Set) String() string {
	parts := make([]string, 0, len(s.prefixes)+1)
	for _, p := range s.prefixes {
		parts = append(parts, p.String())
	}
	if s.unix {
		parts = append(parts, Unix)
	}
	return strings.Join(parts, ",")
}
