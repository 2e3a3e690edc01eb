// Package forwarded reads client addresses out of forwarding headers
// (X-Forwarded-For, X-Real-IP and any other single-address header) with the
// rules of nginx's realip module, so that the handler's chain walk can take
// its entries from one small tokenizer per header syntax.
package forwarded

import (
	"net/netip"
	"strings"
)

// Entry is one address taken from a header, with the port it carried (0 when
// it had none).
type Entry struct {
	Addr netip.Addr
	Port uint16
}

// LastToken returns the right-most entry of a header line and where it
// starts, exactly as nginx's ngx_http_get_forwarded_addr_internal cuts it:
// trailing spaces and commas are skipped, then the entry runs back to the
// previous space or comma. When start > 0, line[:start-1] holds the entries
// to its left. A line that holds only separators yields a token that does
// not parse, as in nginx.
func LastToken(line string) (token string, start int) {
	if len(line) == 0 {
		return "", 0
	}
	p := len(line) - 1
	for p > 0 && isSep(line[p]) {
		p--
	}
	end := p + 1
	for p > 0 {
		if isSep(line[p]) {
			p++
			break
		}
		p--
	}
	return line[p:end], p
}

func isSep(c byte) bool { return c == ' ' || c == ',' }

// ParseEntry reads one entry: "1.2.3.4", "1.2.3.4:80", "2001:db8::1" or
// "[2001:db8::1]:443". A port must be 1-65535, as in nginx. Zones, brackets
// without a port, "unknown", obfuscated identifiers, quotes and empty entries
// do not parse. IPv4 octets with leading zeros do not parse either: nginx
// reads "010.0.0.1" as 10.0.0.1 while other software reads it as octal
// 8.0.0.1, and an address two parsers disagree on is a spoofing tool.
//
// It does not allocate.
func ParseEntry(s string) (Entry, bool) {
	// Most entries are IPv4 addresses, with or without a port: one pass.
	if a, n, ok := dottedQuad(s); ok {
		switch {
		case n == len(s):
			return Entry{Addr: a}, true
		case s[n] == ':':
			if p, ok := parsePort(s[n+1:]); ok {
				return Entry{Addr: a, Port: p}, true
			}
			return Entry{}, false
		}
	}
	if len(s) > 0 && s[0] != '[' && strings.Count(s, ":") != 1 {
		a, ok := parseAddr(s)
		return Entry{Addr: a}, ok
	}
	var host, port string
	if len(s) > 0 && s[0] == '[' {
		i := strings.IndexByte(s, ']')
		if i < 0 || i+1 >= len(s) || s[i+1] != ':' {
			return Entry{}, false
		}
		host, port = s[1:i], s[i+2:]
		a, ok := parseAddr(host)
		if !ok || !a.Is6() {
			return Entry{}, false
		}
		p, ok := parsePort(port)
		if !ok {
			return Entry{}, false
		}
		return Entry{Addr: a, Port: p}, true
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return Entry{}, false
	}
	host, port = s[:i], s[i+1:]
	a, ok := parseAddr(host)
	if !ok || !a.Is4() {
		return Entry{}, false
	}
	p, ok := parsePort(port)
	if !ok {
		return Entry{}, false
	}
	return Entry{Addr: a, Port: p}, true
}

// parseAddr is netip.ParseAddr without zones. Text that cannot be an
// address is turned away before netip sees it, because netip allocates an
// error on every failure and tokens such as "unknown" are common.
func parseAddr(s string) (netip.Addr, bool) {
	if a, ok, isV4 := parseIPv4(s); isV4 {
		return a, ok
	}
	if !maybeAddr(s) {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// parseIPv4 reads a dotted-quad IPv4 address (no leading zeros, as
// netip.ParseAddr) without netip's error allocation: most entries of a
// forwarding header are IPv4 addresses, and this is the walk's hottest
// step. isV4 is false when s has anything but digits and dots, so that the
// caller can try IPv6.
func parseIPv4(s string) (a netip.Addr, ok, isV4 bool) {
	if a, n, ok := dottedQuad(s); ok && n == len(s) {
		return a, true, true
	}
	return netip.Addr{}, false, allDigitsAndDots(s)
}

// dottedQuad reads a well-formed dotted quad (1-3 digits per field, no
// leading zeros, each at most 255) at the start of s and returns how many
// bytes it took. It is the walk's common case; everything else goes the
// slower way, byte by byte.
func dottedQuad(s string) (a netip.Addr, n int, ok bool) {
	var b [4]byte
	i := 0
	for field := 0; field < 4; field++ {
		if field > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, 0, false
			}
			i++
		}
		start, v := i, 0
		for i < len(s) && i-start < 3 {
			d := s[i] - '0'
			if d > 9 {
				break
			}
			v = v*10 + int(d)
			i++
		}
		if i == start || v > 255 || (i-start > 1 && s[start] == '0') {
			return netip.Addr{}, 0, false
		}
		b[field] = byte(v)
	}
	return netip.AddrFrom4(b), i, true
}

// maybeAddr reports whether s has the characters and shape of an IPv4
// address (digits and three dots) or an IPv6 address (hex digits, colons,
// and dots for an embedded IPv4 tail).
func maybeAddr(s string) bool {
	if len(s) < 2 || len(s) > 45 {
		return false
	}
	colons, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.':
			dots++
		case c == ':':
			colons++
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			if colons == 0 && i >= 4 {
				return false // no IPv6 address has five hex digits before a colon
			}
		default:
			return false
		}
	}
	if colons == 0 {
		return dots == 3 && len(s) >= 7 && len(s) <= 15 && allDigitsAndDots(s)
	}
	return colons >= 2 && (dots == 0 || dots == 3)
}

func allDigitsAndDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// parsePort accepts decimal digits only (leading zeros allowed, as nginx's
// ngx_atoi does) for a value in 1-65535.
func parsePort(s string) (uint16, bool) {
	if len(s) == 0 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	if n < 1 {
		return 0, false
	}
	return uint16(n), true
}
