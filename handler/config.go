package handler

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Recursive is real_ip_recursive in JSON: true/false, or "on"/"off" as Kong
// and nginx write it (so a KONG_REAL_IP_RECURSIVE value can be pasted in).
type Recursive bool

// UnmarshalJSON accepts true, false, "on", "off", "true" and "false".
func (r *Recursive) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err == nil {
		switch v := v.(type) {
		case bool:
			*r = Recursive(v)
			return nil
		case string:
			switch strings.ToLower(v) {
			case "on", "true":
				*r = true
				return nil
			case "off", "false":
				*r = false
				return nil
			}
		}
	}
	return fmt.Errorf("real_ip_recursive takes true or false (or Kong's \"on\" or \"off\"), got %s", b)
}

// CheckHeaderName validates a real_ip_header value and returns its canonical
// form: HeaderProxyProtocol, or the header name in canonical MIME form. A name
// that looks like a misspelt proxy_protocol is refused rather than taken as a
// header name: the handler would then believe whatever a trusted sender puts
// in a header of that name, so a typo would let a client choose its address.
func CheckHeaderName(name string) (string, error) {
	if strings.EqualFold(name, HeaderProxyProtocol) {
		return HeaderProxyProtocol, nil
	}
	if LooksLikeProxyProtocol(name) {
		return "", fmt.Errorf("real_ip_header '%s' is not a header name the handler accepts: it looks like a misspelling of proxy_protocol; "+
			"write proxy_protocol (one word, with an underscore) to take the client from the PROXY header", name)
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", fmt.Errorf("real_ip_header '%s' is not a valid header name: write the header's name as the load balancer sends it "+
			"(X-Forwarded-For, X-Real-IP, CF-Connecting-IP, ...), or proxy_protocol", name)
	}
	return http.CanonicalHeaderKey(name), nil
}

// LooksLikeProxyProtocol reports whether s, which is not proxy_protocol
// itself, is close enough to it to be a typo: the same letters with other
// separators ("proxy-protocol", "ProxyProtocol", "proxy protocol",
// "proxy_protocol:"), a shortened form ("proxy_proto") or up to two letters
// wrong ("proxy_protcol").
func LooksLikeProxyProtocol(s string) bool {
	const want = "proxyprotocol"
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		if c >= 'a' && c <= 'z' {
			b.WriteRune(c)
		}
	}
	letters := b.String()
	return strings.HasPrefix(letters, "proxyproto") || editDistance(letters, want) <= 2
}

// editDistance is the Levenshtein distance between two short ASCII strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
