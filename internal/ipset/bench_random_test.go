package ipset

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// randomPrefixes returns n random masked prefixes, three quarters IPv4
// (lengths 8-32) and a quarter IPv6 (lengths 16-128), from a fixed seed.
func randomPrefixes(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		if r.IntN(4) > 0 {
			var b [4]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			out = append(out, netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(25)).Masked().String())
			continue
		}
		var b [16]byte
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(113)).Masked().String())
	}
	return out
}

// randomProbes returns n random addresses, IPv4 and IPv6.
func randomProbes(n int, seed uint64) []netip.Addr {
	r := rand.New(rand.NewPCG(seed, seed+1))
	out := make([]netip.Addr, n)
	for i := range out {
		if i%4 > 0 {
			out[i] = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			continue
		}
		var b [16]byte
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		out[i] = netip.AddrFrom16(b)
	}
	return out
}

// BenchmarkContainsRandom looks up random addresses in sets of 1, 10,000
// and 100,000 random prefixes of mixed families and lengths.
//
//	go test ./internal/ipset -run '^$' -bench ContainsRandom -benchmem
func BenchmarkContainsRandom(b *testing.B) {
	probes := randomProbes(1024, 7)
	for _, n := range []int{1, 10000, 100000} {
		s, _, err := Parse(randomPrefixes(n, 42))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			hits := 0
			for i := 0; i < b.N; i++ {
				if s.Contains(probes[i&1023]) {
					hits++
				}
			}
			_ = hits
		})
	}
}

// BenchmarkBuild100000 builds a set of 100,000 prefixes, as a refresh of a
// large published list does.
func BenchmarkBuild100000(b *testing.B) {
	tokens := randomPrefixes(100000, 42)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := Parse(tokens); err != nil {
			b.Fatal(err)
		}
	}
}
