package handler

import (
	"encoding/json"
	"strings"
	"testing"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/standard"

	"github.com/caddy-realip/realip/internal/configtest"
)

func TestRecursiveJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`true`: true, `false`: false, `"on"`: true, `"off"`: false, `"ON"`: true, `"Off"`: false, `"true"`: true, `"false"`: false,
	} {
		var h Handler
		if err := json.Unmarshal([]byte(`{"real_ip_recursive":`+in+`}`), &h); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if bool(h.RealIPRecursive) != want {
			t.Errorf("%s: got %v, want %v", in, h.RealIPRecursive, want)
		}
	}
	for _, in := range []string{`"yes"`, `1`, `null`, `""`, `["on"]`} {
		var h Handler
		err := json.Unmarshal([]byte(`{"real_ip_recursive":`+in+`}`), &h)
		if err == nil || !strings.Contains(err.Error(), `real_ip_recursive takes true or false (or Kong's "on" or "off"), got `+in) {
			t.Errorf("%s: error %v", in, err)
		}
	}
	// It is written back as a JSON boolean (adapted Caddyfiles, /config).
	out, _ := json.Marshal(Handler{RealIPRecursive: true})
	if string(out) != `{"real_ip_recursive":true}` {
		t.Errorf("marshalled as %s", out)
	}
}

func TestCheckHeaderName(t *testing.T) {
	accepted := map[string]string{
		"proxy_protocol": HeaderProxyProtocol, "PROXY_PROTOCOL": HeaderProxyProtocol,
		"x-forwarded-for": "X-Forwarded-For", "X-Real-IP": "X-Real-Ip", "CF-Connecting-IP": "Cf-Connecting-Ip",
		"True-Client-IP": "True-Client-Ip", "Fly-Client-IP": "Fly-Client-Ip", "X-Original-Forwarded-For": "X-Original-Forwarded-For",
		"Forwarded": "Forwarded", "X-Envoy-External-Address": "X-Envoy-External-Address", "Proxy-Client-IP": "Proxy-Client-Ip",
	}
	for in, want := range accepted {
		got, err := CheckHeaderName(in)
		if err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	nearMisses := []string{"proxy-protocol", "proxyprotocol", "ProxyProtocol", "Proxy-Protocol", "proxy_protocol:",
		"proxy protocol", " proxy_protocol", "proxy_protcol", "proxy_protocoll", "proxy_proto", "X-Proxy-Protocol", "proxy.protocol"}
	for _, in := range nearMisses {
		_, err := CheckHeaderName(in)
		if err == nil || !strings.Contains(err.Error(), "misspelling of proxy_protocol; write proxy_protocol") {
			t.Errorf("%q: error %v", in, err)
		}
	}
	for _, in := range []string{"X(Client)", "X Client", "", "X-Client-IP:"} {
		_, err := CheckHeaderName(in)
		if err == nil || !strings.Contains(err.Error(), "is not a valid header name") {
			t.Errorf("%q: error %v", in, err)
		}
	}
}

// TestJSONConfig loads JSON as the admin API's /load does.
func TestJSONConfig(t *testing.T) {
	load := func(handler string) error {
		return configtest.Validate(t, []byte(`{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[`+handler+`]}]}}}}}`))
	}
	if err := load(`{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":"on"}`); err != nil {
		t.Errorf(`"on": %v`, err)
	}
	err := load(`{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_recursive":"yes"}`)
	if err == nil || !strings.Contains(err.Error(), `real_ip_recursive takes true or false (or Kong's "on" or "off"), got "yes"`) {
		t.Errorf(`"yes": %v`, err)
	}
	err = load(`{"handler":"real_ip","trusted_ips":["10.0.0.0/8"],"real_ip_header":"proxy-protocol"}`)
	if err == nil || !strings.Contains(err.Error(), "real_ip_header 'proxy-protocol' is not a header name the handler accepts") {
		t.Errorf(`"proxy-protocol": %v`, err)
	}
}

// A Kong user's spelling of the setting works when provisioned.
func TestRecursiveOnFromJSONWalks(t *testing.T) {
	var h Handler
	if err := json.Unmarshal([]byte(`{"trusted_ips":["10.0.0.0/8"],"real_ip_header":"X-Forwarded-For","real_ip_recursive":"on"}`), &h); err != nil {
		t.Fatal(err)
	}
	p := provisioned(t, h)
	r, _ := request("10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.7, 10.0.0.2"}})
	if err := p.ServeHTTP(nil, r, nextOK); err != nil {
		t.Fatal(err)
	}
	if r.RemoteAddr != "198.51.100.7:0" {
		t.Errorf("RemoteAddr %s", r.RemoteAddr)
	}
}
