package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3From is an HTTP/3 client whose QUIC packets leave from the loopback
// address src, for the TLS server name sni; dialTo, if set, is where they
// go whatever the URL says.
func h3From(src, sni, dialTo string) *http.Client {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: sni, NextProtos: []string{http3.NextProtoH3}},
		Dial: func(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			if dialTo != "" {
				addr = dialTo
			}
			udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
			if err != nil {
				return nil, err
			}
			raddr, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return quic.DialEarly(ctx, udp, raddr, tlsCfg, cfg)
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestHTTP3 sends HTTP/3 requests with X-Forwarded-For: from a trusted peer
// the header is believed, from an untrusted one it is not; the access log,
// the client_ip matcher and the upstream agree.
func TestHTTP3(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	port := freePort(t)
	c.loadCaddyfile(fmt.Sprintf(`{
	servers 127.0.0.1:%[1]d {
		protocols h1 h2 h3
	}
}

https://localhost:%[1]d {
	bind 127.0.0.1
	tls internal
	log
	real_ip 127.0.0.1 {
		real_ip_header X-Forwarded-For
		real_ip_recursive on
	}
	@client client_ip 198.51.100.31
	header @client X-Client-Matched yes
	header X-Seen-Client {client_ip}
	reverse_proxy %[2]s
}`, port, up))
	url := fmt.Sprintf("https://localhost:%d/", port)
	get := func(src string) (*http.Response, http.Header) {
		client := h3From(src, "localhost", "")
		defer client.Transport.(*http3.Transport).Close()
		resp, body := getWhileIssuing(t, client, newGet(url, "X-Forwarded-For: 198.51.100.31"))
		var upstream http.Header
		if err := json.Unmarshal(body, &upstream); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return resp, upstream
	}
	resp, upstream := get("127.0.0.1")
	if resp.ProtoMajor != 3 {
		t.Fatalf("spoken over %s, want HTTP/3", resp.Proto)
	}
	if resp.Header.Get("X-Seen-Client") != "198.51.100.31" || resp.Header.Get("X-Client-Matched") != "yes" || upstream.Get("X-Forwarded-For") != "198.51.100.31, 198.51.100.31" {
		t.Errorf("trusted peer over HTTP/3: client %q, matched %q, upstream %q", resp.Header.Get("X-Seen-Client"), resp.Header.Get("X-Client-Matched"), upstream.Get("X-Forwarded-For"))
	}
	resp, upstream = get("127.0.0.2")
	if resp.Header.Get("X-Seen-Client") != "127.0.0.2" || resp.Header.Get("X-Client-Matched") != "" || upstream.Get("X-Forwarded-For") != "127.0.0.2" {
		t.Errorf("untrusted peer over HTTP/3: client %q, matched %q, upstream %q", resp.Header.Get("X-Seen-Client"), resp.Header.Get("X-Client-Matched"), upstream.Get("X-Forwarded-For"))
	}
	t.Logf("HTTP/3: trusted 127.0.0.1 → client 198.51.100.31; untrusted 127.0.0.2 → client 127.0.0.2")
}

// TestREADMEHTTP3 runs the README's HTTP/3 Caddyfile (ports, names, the
// trusted range and the upstream swapped for the test's) with an HTTP/3
// client: a trusted peer's X-Forwarded-For is believed.
func TestREADMEHTTP3(t *testing.T) {
	c := startCaddy(t)
	up := upstreamEcho(t)
	port := freePort(t)
	block := readmeBlock(t, "# HTTP/3 and the real client")
	block = strings.ReplaceAll(block, "servers :443", fmt.Sprintf("servers :%d", port))
	block = strings.ReplaceAll(block, "app:8080", up)
	block = strings.ReplaceAll(block, "10.0.0.0/8", "127.0.0.1 10.0.0.0/8")
	block = strings.Replace(block, "{\n", fmt.Sprintf("{\n\tlocal_certs\n\thttps_port %d\n", port), 1)
	c.loadCaddyfile(block)
	client := h3From("127.0.0.1", "app.example.com", fmt.Sprintf("127.0.0.1:%d", port))
	defer client.Transport.(*http3.Transport).Close()
	resp, body := getWhileIssuing(t, client, newGet("https://app.example.com/", "X-Forwarded-For: 198.51.100.32, 10.0.0.7"))
	var upstream http.Header
	if err := json.Unmarshal(body, &upstream); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if resp.ProtoMajor != 3 || !strings.HasSuffix(upstream.Get("X-Forwarded-For"), "198.51.100.32") {
		t.Errorf("README HTTP/3 example: %s, upstream X-Forwarded-For %q", resp.Proto, upstream.Get("X-Forwarded-For"))
	}
}
