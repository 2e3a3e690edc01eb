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
	"github.com/gaissmai/bart"
	"go.uber.org/zap"
)

// Token values with a meaning of their own.
const (
	// Unix trusts every peer on a UNIX domain socket (nginx's "unix:").
	Unix = "unix:"
	// PrivateRanges is Caddy's shorthand for the private and loopback ranges.
	PrivateRanges = "private_ranges"
)

// Set answers "is this peer trusted?" with a routing table
// (github.com/gaissmai/bart's Lite): a lookup costs a few nanoseconds
// whatever the number of entries, and allocates nothing. A Set is never
// changed once built; a new one is built and swapped in instead.
type Set struct {
	unix     bool
	table    bart.Lite
	prefixes []netip.Prefix // normalised entries, for String, Audit and tests
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
// empty list is ErrEmpty, unless the module has IP sources (sourced), whose
// ranges may be all it trusts.
func Build(tokens []string, sourced bool, logger *zap.Logger) (*Set, error) {
	s, warnings, err := Parse(tokens)
	if err != nil {
		return nil, err
	}
	if s.Empty() && !sourced {
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
	var prefixes []netip.Prefix
	var warnings []Warning
	unix := false
	for _, entry := range Expand(tokens) {
		if entry == Unix {
			unix = true
			continue
		}
		p, masked, err := parseEntry(entry)
		if err != nil {
			return nil, nil, err
		}
		if masked {
			warnings = append(warnings, Warning{Entry: entry, Masked: p})
		}
		prefixes = append(prefixes, p)
	}
	return FromPrefixes(prefixes, unix), warnings, nil
}

// FromPrefixes builds a Set from masked prefixes (IPv4 ones in their IPv4
// form), trusting UNIX socket peers if unix.
func FromPrefixes(prefixes []netip.Prefix, unix bool) *Set {
	s := &Set{unix: unix, prefixes: prefixes}
	for _, p := range prefixes {
		s.table.Insert(p)
	}
	return s
}

// unmapPrefix gives an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) its
// IPv4 form, so that it matches the same peers as the IPv4 entry would.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
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
		p = unmapPrefix(p)
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

// Contains reports whether addr is trusted. IPv4-mapped IPv6 addresses match
// IPv4 entries. It does not allocate.
func (s *Set) Contains(addr netip.Addr) bool {
	if s == nil || !addr.IsValid() {
		return false
	}
	return s.table.Contains(addr.Unmap())
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
