package handler

import (
	"github.com/caddy-realip/realip/internal/forwarded"
	"github.com/caddy-realip/realip/internal/ipset"
)

// Step is one entry the chain walk looked at, and what it made of it: the
// debug log and `caddy real-ip explain` show them.
type Step struct {
	Line    int    // index of the header line (0 is the first)
	Token   string // the entry as written
	Parsed  bool
	Trusted bool   // the entry is in trusted_ips (when it parsed)
	Verdict string // what the walk did with it
}

// Verdicts of a Step.
const (
	VerdictUnparsable = "does not parse: the walk stops"
	VerdictRightmost  = "the right-most entry: the client (real_ip_recursive off)"
	VerdictTrusted    = "trusted: a proxy, go on to its left"
	VerdictClient     = "not trusted: the client"
	VerdictLeftmost   = "trusted, and the left-most entry: the client"
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
//
// trace, when not nil, receives each step; the request path passes nil and
// pays one comparison per step for it.
func walk(lines []string, recursive bool, trusted *ipset.Set, trace *[]Step) (forwarded.Entry, bool) {
	var cur forwarded.Entry
	found := false
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			if found && !trusted.Contains(cur.Addr) {
				if trace != nil {
					(*trace)[len(*trace)-1].Verdict = VerdictClient
				}
				return cur, true
			}
			token, start := forwarded.LastToken(line)
			e, ok := forwarded.ParseEntry(token)
			if !ok {
				if trace != nil {
					*trace = append(*trace, Step{Line: i, Token: token, Verdict: VerdictUnparsable})
				}
				return cur, found
			}
			cur, found = e, true
			if trace != nil {
				*trace = append(*trace, Step{Line: i, Token: token, Parsed: true, Trusted: trusted.Contains(e.Addr), Verdict: VerdictTrusted})
			}
			if !recursive {
				if trace != nil {
					(*trace)[len(*trace)-1].Verdict = VerdictRightmost
				}
				return cur, true
			}
			if start == 0 {
				break
			}
			line = line[:start-1]
		}
	}
	if found && trace != nil {
		last := &(*trace)[len(*trace)-1]
		last.Verdict = VerdictClient
		if last.Trusted {
			last.Verdict = VerdictLeftmost
		}
	}
	return cur, found
}
