// Package ppvectors reads testdata/proxyproto/vectors.json, the PROXY
// protocol header vectors shared by the listener wrapper's in-process tests
// and fuzz seeds and by the end-to-end and nginx conformance tests.
package ppvectors

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// AWSNLB names the vector shaped like an AWS NLB header: v2, TCP over IPv4,
// with a VPC endpoint ID TLV.
const AWSNLB = "v2 AWS NLB: VPC endpoint TLV"

// Vector is one PROXY header and what a trusted sender of it gets.
type Vector struct {
	Name   string `json:"name"`
	Text   string `json:"text"`   // the header as text (v1), or
	Hex    string `json:"hex"`    // as hex (v2)
	Expect string `json:"expect"` // "ip:port", "peer" or "close"
	// nginx's answer where it differs by design, and why.
	Nginx string `json:"nginx"`
	Why   string `json:"why"`
	// What an untrusted peer gets (untrusted ignore) where it is not simply
	// "peer" for a valid header and "close" for a malformed one.
	Untrusted string `json:"untrusted"`

	Data []byte `json:"-"` // the header's bytes, from Text or Hex
}

// Load reads the vectors at path.
func Load(path string) ([]Vector, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var vs []Vector
	if err := json.Unmarshal(b, &vs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range vs {
		v := &vs[i]
		v.Data = []byte(v.Text)
		if v.Hex != "" {
			if v.Data, err = hex.DecodeString(v.Hex); err != nil {
				return nil, fmt.Errorf("%s: vector %q: %w", path, v.Name, err)
			}
		}
	}
	return vs, nil
}

// Find returns the vector called name.
func Find(vs []Vector, name string) (Vector, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return Vector{}, false
}
