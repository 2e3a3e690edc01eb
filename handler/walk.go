package handler

import (
	"net/netip"

	"github.com/caddy-realip/realip/internal/forwarded"
	"github.com/caddy-realip/realip/internal/ipset"
)

// Step is one entry the chain walk looked at, and what it made of it: the
// debug log and `caddy real-ip explain` show them.
type Step struct {
	Line    int    // index of the header line (0 is the first)
	Token   string // the entry as written
	Parsed  bool
	Addr    netip.Addr // the entry's address (when it parsed)
	Trusted bool       // the entry is in trusted_ips (when it parsed)
	Verdict string     // what the walk did with it
}

// Verdicts of a Step.
const (
	VerdictUnparsable    = "does not parse: the walk stops"
	VerdictBrokenElement = "the element's syntax is broken: it does not parse, the walk stops"
	VerdictRightmost     = "the right-most entry: the client (real_ip_recursive off)"
	VerdictHop           = "a trusted hop (real_ip_trusted_hops), whatever its address: go on to its left"
	VerdictNextAfter     = "the entry left of the trusted hops: the client (real_ip_recursive off)"
	VerdictTrusted       = "trusted: a proxy, go on to its left"
	VerdictClient        = "not trusted: the client"
	VerdictLeftmost      = "the left-most entry: the client"
	VerdictShortChain    = "no entry left of the trusted hops (real_ip_trusted_hops): the peer stays the client"
)

// chain says how to walk a header.
type chain struct {
	forwarded bool // RFC 7239 Forwarded syntax, else a comma/space list
	recursive bool
	hops      int // real_ip_trusted_hops
	trusted   *ipset.Set
}

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
// With c.hops = N, the N right-most entries are taken as proxies whatever
// their address, and the walk goes on from the next one as above; a chain
// of N entries or fewer gives no answer (the peer stays the client).
//
// trace, when not nil, receives each step; the request path passes nil and
// pays one comparison per step for it.
func (c chain) walk(lines []string, trace *[]Step) (forwarded.Entry, bool) {
	if c.forwarded {
		return c.walkForwarded(lines, trace)
	}
	w := walker{chain: c, trace: trace}
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			token, start := forwarded.LastToken(line)
			e, ok := forwarded.ParseEntry(token)
			if w.offer(i, token, e, ok) {
				return w.result()
			}
			if start == 0 {
				break
			}
			line = line[:start-1]
		}
	}
	w.end()
	return w.result()
}

// walkForwarded is walk for RFC 7239 Forwarded lines: every element's for=
// value is an entry. Elements are split off right to left
// (forwarded.LastElement), so an element whose syntax is broken stops the
// walk where it stands, as an entry that does not parse does, and a
// client's junk left of what a proxy appended cannot undo it.
func (c chain) walkForwarded(lines []string, trace *[]Step) (forwarded.Entry, bool) {
	w := walker{chain: c, trace: trace}
	var buf [1]string // one element's for= value, without allocating
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			elem, start, ok := forwarded.LastElement(line)
			if ok && !blank(elem) {
				var fors []string
				fors, ok = forwarded.ForwardedFor(elem, buf[:0])
				ok = ok && len(fors) == 1
				if ok {
					e, parsed := forwarded.ParseNode(fors[0])
					if w.offer(i, fors[0], e, parsed) {
						return w.result()
					}
				}
			}
			if !ok {
				w.stop(i, elem, VerdictBrokenElement)
				return w.result()
			}
			if start == 0 {
				break
			}
			line = line[:start-1]
		}
	}
	w.end()
	return w.result()
}

// blank reports whether an element is empty or white space (HTTP's list
// syntax allows empty elements).
func blank(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && s[i] != '\t' {
			return false
		}
	}
	return true
}

// walker holds the state of one walk.
type walker struct {
	chain
	trace *[]Step
	cur   forwarded.Entry
	found bool
	taken int
}

// offer gives the walker the next entry to the left (ok: it parsed) and
// reports whether the walk is over.
func (w *walker) offer(line int, token string, e forwarded.Entry, ok bool) bool {
	if w.found && w.curIsClient() {
		w.verdict(VerdictClient)
		return true
	}
	if !ok {
		w.stop(line, token, VerdictUnparsable)
		return true
	}
	// An IPv4-mapped entry is the IPv4 client, as a mapped PROXY source
	// is, so matchers of IPv4 ranges match it.
	e.Addr = e.Addr.Unmap()
	w.cur, w.found = e, true
	w.taken++
	if w.trace != nil {
		v := VerdictTrusted
		if w.taken <= w.hops {
			v = VerdictHop
		}
		*w.trace = append(*w.trace, Step{Line: line, Token: token, Parsed: true, Addr: e.Addr, Trusted: w.trusted.Contains(e.Addr), Verdict: v})
	}
	if !w.recursive && w.taken > w.hops {
		if w.hops > 0 {
			w.verdict(VerdictNextAfter)
		} else {
			w.verdict(VerdictRightmost)
		}
		return true
	}
	return false
}

// curIsClient reports whether the last entry taken ends a recursive walk:
// it is past the trusted hops and not trusted.
func (w *walker) curIsClient() bool {
	return w.taken > w.hops && !w.trusted.Contains(w.cur.Addr)
}

// stop records an entry (or line) that ends the walk without being taken.
func (w *walker) stop(line int, token string, verdict string) {
	if w.trace != nil {
		*w.trace = append(*w.trace, Step{Line: line, Token: token, Verdict: verdict})
	}
}

// end is the walk running out of entries: the last one taken is the
// client.
func (w *walker) end() {
	if !w.found {
		return
	}
	if w.taken <= w.hops {
		w.verdict(VerdictShortChain)
		return
	}
	if w.curIsClient() {
		w.verdict(VerdictClient)
		return
	}
	w.verdict(VerdictLeftmost)
}

// verdict sets the verdict of the last step.
func (w *walker) verdict(v string) {
	if w.trace != nil && len(*w.trace) > 0 {
		(*w.trace)[len(*w.trace)-1].Verdict = v
	}
}

// result is the walk's answer. A walk that never got past the trusted hops
// has none: every entry it took is a proxy's, and a bypassed hop would
// otherwise let the client's own entry be taken (Envoy falls back to the
// remote address the same way).
func (w *walker) result() (forwarded.Entry, bool) { return w.cur, w.found && w.taken > w.hops }
