package forwarded

import (
	"net/netip"
	"strings"
)

// ForwardedFor reads one line of an RFC 7239 Forwarded header and appends
// the for= value of each of its elements, left to right, to dst (quotes
// removed). An element without for=, or whose for= value holds a quoted
// escape or appears twice, contributes "" (an entry that does not parse).
// Empty list elements are skipped, as HTTP's list syntax says. ok is false
// when the line's syntax is broken (a pair without "=", a bad token
// character, an unbalanced quote): the line does not parse as a whole.
//
// The values are substrings of line; with a dst of enough capacity it does
// not allocate.
func ForwardedFor(line string, dst []string) (fors []string, ok bool) {
	i := 0
	for {
		// One element: pairs separated by ";".
		forValue, hasFor, empty := "", false, true
		for {
			i = skipOWS(line, i)
			if i < len(line) && (line[i] == ';' || line[i] == ',') || i == len(line) {
				// An empty pair (or element).
				if i < len(line) && line[i] == ';' {
					i++
					continue
				}
				break
			}
			empty = false
			start := i
			for i < len(line) && isTchar(line[i]) {
				i++
			}
			if i == start || i == len(line) || line[i] != '=' {
				return dst, false
			}
			name := line[start:i]
			i++ // '='
			var value string
			escaped := false
			if i < len(line) && line[i] == '"' {
				i++
				vstart := i
				for i < len(line) && line[i] != '"' {
					if line[i] == '\\' {
						escaped = true
						i++
					}
					i++
				}
				if i >= len(line) {
					return dst, false // unbalanced quote
				}
				value = line[vstart:i]
				i++ // closing quote
			} else {
				vstart := i
				for i < len(line) && isTchar(line[i]) {
					i++
				}
				if i == vstart {
					return dst, false
				}
				value = line[vstart:i]
			}
			i = skipOWS(line, i)
			if i < len(line) && line[i] != ';' && line[i] != ',' {
				return dst, false
			}
			if strings.EqualFold(name, "for") {
				if hasFor || escaped {
					value = "" // a second for=, or an escape: does not parse
				}
				forValue, hasFor = value, true
			}
			if i < len(line) && line[i] == ';' {
				i++
				continue
			}
			break
		}
		if !empty {
			dst = append(dst, forValue)
		}
		if i >= len(line) {
			return dst, true
		}
		i++ // ','
	}
}

// ParseNode reads a Forwarded for= value (RFC 7239 section 6): an IPv4
// address or a bracketed IPv6 address, with an optional port. A port is
// 1-65535, or an obfuscated port ("_abc"), which keeps the address with
// port 0. "unknown", obfuscated identifiers ("_hidden"), unbracketed IPv6
// addresses and zones do not parse. It does not allocate.
func ParseNode(s string) (Entry, bool) {
	var host, port string
	if len(s) > 0 && s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Entry{}, false
		}
		host, port = s[1:end], s[end+1:]
		a, ok := parseAddr(host)
		if !ok || !a.Is6() {
			return Entry{}, false
		}
		return nodePort(a, port)
	}
	host, port = s, ""
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i:]
	}
	a, ok := parseAddr(host)
	if !ok || !a.Is4() {
		return Entry{}, false
	}
	e, ok := nodePort(a, port)
	return e, ok
}

// nodePort reads what follows a node name: nothing, or ":" and a port.
func nodePort(a netip.Addr, rest string) (Entry, bool) {
	if rest == "" {
		return Entry{Addr: a}, true
	}
	if rest[0] != ':' {
		return Entry{}, false
	}
	p := rest[1:]
	if len(p) > 1 && p[0] == '_' && isObfuscated(p[1:]) {
		return Entry{Addr: a}, true
	}
	n, ok := parsePort(p)
	if !ok {
		return Entry{}, false
	}
	return Entry{Addr: a, Port: n}, true
}

func isObfuscated(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return len(s) > 0
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isTchar reports whether c may appear in an HTTP token (RFC 9110).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// LastElement splits the right-most element off one line of a Forwarded
// header: elem is the text after the last comma that is not inside a
// quoted string, start its offset in line (0 when it is the whole line).
// ok is false when a quoted string opened in elem never closes to its left:
// then elem is the rest of the line, which does not parse.
//
// A proxy appends its element at the right, so the header is read right to
// left, element by element: what a client wrote to the left, however
// broken, cannot undo an element a proxy appended after it.
func LastElement(line string) (elem string, start int, ok bool) {
	inQuote := false
	for i := len(line) - 1; i >= 0; i-- {
		switch line[i] {
		case '"':
			// A quote preceded by an odd number of backslashes is
			// escaped (a quoted-pair inside a quoted string).
			n := 0
			for j := i - 1; j >= 0 && line[j] == '\\'; j-- {
				n++
			}
			if n%2 == 0 {
				inQuote = !inQuote
			}
		case ',':
			if !inQuote {
				return line[i+1:], i + 1, true
			}
		}
	}
	return line, 0, !inQuote
}
