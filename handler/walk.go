package handler

import (
	"github.com/caddy-realip/realip/internal/forwarded"
	"github.com/caddy-realip/realip/internal/ipset"
)

// walk finds the client address in the lines of a forwarding header, the
// peer being trusted already. It follows nginx's
// ngx_http_get_forwarded_addr line for line: lines are read last to first,
// each from right to left; without recursion the right-most entry of the
// last line is the answer. With recursion, an entry is taken, and if it is
// trusted the walk goes on to the next one to its left; the first untrusted
// entry is the answer, or the left-most if all are trusted. An entry that
// does not parse stops the walk: if nothing was taken yet there is no
// answer, otherwise the last entry taken stands.
func walk(lines []string, recursive bool, trusted *ipset.Set) (forwarded.Entry, bool) {
	var cur forwarded.Entry
	found := false
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			if found && !trusted.Contains(cur.Addr) {
				return cur, true
			}
			token, start := forwarded.LastToken(line)
			e, ok := forwarded.ParseEntry(token)
			if !ok {
				return cur, found
			}
			cur, found = e, true
			if !recursive {
				return cur, true
			}
			if start == 0 {
				break
			}
			line = line[:start-1]
		}
	}
	return cur, found
}
