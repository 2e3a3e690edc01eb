package e2e

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"gopkg.in/yaml.v3"
)

// exampleCaddyfile returns the Caddyfile held by the ConfigMap of a
// Kubernetes example's manifest.
func exampleCaddyfile(t *testing.T, example string) string {
	t.Helper()
	data, err := os.ReadFile("../examples/kubernetes/" + example + "/caddy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: no ConfigMap with a Caddyfile: %v", example, err)
		}
		if doc.Kind == "ConfigMap" && doc.Data["Caddyfile"] != "" {
			return doc.Data["Caddyfile"]
		}
	}
}

// awsEndpointHeader is an AWS NLB PROXY v2 header from 203.0.113.9 whose
// PrivateLink TLV (0xEA, subtype 1) carries the VPC endpoint ID vpce, or
// no TLV when vpce is empty.
func awsEndpointHeader(t *testing.T, vpce string) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 5555},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 80}}
	if vpce != "" {
		if err := h.SetTLVs([]proxyproto.TLV{{Type: tlvparse.PP2_TYPE_AWS, Value: append([]byte{0x01}, vpce...)}}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExampleAWSPrivateLinkEndpoints runs the PrivateLink example's
// Caddyfile (ports moved, the VPC CIDR and the upstream replaced by the
// test's): an allowed VPC endpoint reaches the upstream with the client's
// address; a foreign endpoint, and a header without one, get 403; the NLB's
// LOCAL health check and a kubelet probe get 200.
func TestExampleAWSPrivateLinkEndpoints(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	ports := freePorts(t, 2)
	cf := exampleCaddyfile(t, "aws-privatelink-endpoints")
	cf = regexp.MustCompile(`:(80|8081)\b`).ReplaceAllStringFunc(cf, func(p string) string {
		return fmt.Sprintf(":%d", map[string]int{":80": ports[0], ":8081": ports[1]}[p])
	})
	cf = strings.ReplaceAll(strings.ReplaceAll(cf, "10.0.0.0/16", "127.0.0.1"), "app:8080", up)
	c.loadCaddyfile(cf)
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])

	if h := upstreamHeaders(t, addr, string(awsEndpointHeader(t, "vpce-0fedcba9876543210"))); h.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("allowed endpoint: upstream got %v", h)
	}
	for name, header := range map[string][]byte{
		"foreign endpoint": awsEndpointHeader(t, "vpce-0aaaaaaaaaaaaaaaa"),
		"no endpoint TLV":  awsEndpointHeader(t, ""),
	} {
		if o := exchangeWithHeaders(t, addr, header, nil); o.status != 403 {
			t.Errorf("%s: %+v, want 403", name, o)
		}
	}
	byName := map[string][]byte{}
	for _, v := range loadVectors(t) {
		byName[v.Name] = v.Data
	}
	conn, err := dialFrom("127.0.0.1")(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if o := roundTrip(t, conn, append(append([]byte(nil), byName["v2 LOCAL"]...), "GET /healthz HTTP/1.1\r\nHost: 10.0.3.7\r\nConnection: close\r\n\r\n"...), 5*time.Second); o.status != 200 {
		t.Errorf("NLB health check: %+v", o)
	}
	conn, err = dialFrom("127.0.0.1")(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	if o := roundTrip(t, conn, []byte("GET /healthz HTTP/1.1\r\nHost: 10.0.3.7\r\nConnection: close\r\n\r\n"), 5*time.Second); o.status != 200 {
		t.Errorf("kubelet probe: %+v", o)
	}
}
