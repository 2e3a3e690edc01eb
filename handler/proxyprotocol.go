package handler

import (
	"encoding/hex"
	"net"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/caddy-realip/realip/internal/conninfo"
)

// proxyProtocolPlaceholder answers {http.real_ip.proxy_protocol.<name>} for
// a connection that carried a PROXY header.
func proxyProtocolPlaceholder(info *conninfo.Info, name string) (any, bool) {
	if info != nil {
		switch name {
		case "conn_ip":
			return addrHost(info.Physical), true
		case "conn_port":
			return addrPort(info.Physical), true
		}
	}
	if info == nil || info.Header == nil {
		// Not through the listener wrapper, or no header on this
		// connection: the names are known, and empty.
		_, known := proxyProtocolNames[name]
		return "", known
	}
	h := info.Header
	switch name {
	case "version":
		return strconv.Itoa(int(h.Version)), true
	case "command":
		if h.Command.IsLocal() {
			return "LOCAL", true
		}
		return "PROXY", true
	case "src_ip", "src_port", "dst_ip", "dst_port":
		// A LOCAL header's address block, if it has one, is to be
		// ignored (the spec): it names no client.
		if h.Command.IsLocal() {
			return "", true
		}
		switch name {
		case "src_ip":
			return addrHost(h.SourceAddr), true
		case "src_port":
			return addrPort(h.SourceAddr), true
		case "dst_ip":
			return addrHost(h.DestinationAddr), true
		}
		return addrPort(h.DestinationAddr), true
	}
	tlvs, err := h.TLVs()
	if err != nil {
		return nil, false
	}
	switch name {
	case "alpn":
		return tlvText(tlvs, proxyproto.PP2_TYPE_ALPN), true
	case "authority":
		return tlvUTF8(tlvs, proxyproto.PP2_TYPE_AUTHORITY), true
	case "unique_id":
		return tlvText(tlvs, proxyproto.PP2_TYPE_UNIQUE_ID), true
	case "netns":
		return tlvUTF8(tlvs, proxyproto.PP2_TYPE_NETNS), true
	case "aws_vpce_id":
		return tlvparse.FindAWSVPCEndpointID(tlvs), true
	case "azure_link_id":
		if id, ok := tlvparse.FindAzurePrivateEndpointLinkID(tlvs); ok {
			return strconv.FormatUint(uint64(id), 10), true
		}
		return "", true
	case "gcp_psc_id":
		if id, ok := tlvparse.ExtractPSCConnectionID(tlvs); ok {
			return strconv.FormatUint(id, 10), true
		}
		return "", true
	case "ssl.version", "ssl.cn", "ssl.cipher", "ssl.verified":
		ssl, ok := tlvparse.FindSSL(tlvs)
		if !ok {
			return "", true
		}
		var v string
		switch name {
		case "ssl.version":
			v, _ = ssl.SSLVersion()
		case "ssl.cn":
			v, _ = ssl.ClientCN()
		case "ssl.cipher":
			v, _ = ssl.SSLCipher()
		case "ssl.verified":
			return ssl.Verified(), true
		}
		return v, true
	}
	return nil, false
}

var proxyProtocolNames = map[string]struct{}{
	"conn_ip": {}, "conn_port": {}, "version": {}, "command": {}, "src_ip": {}, "src_port": {}, "dst_ip": {}, "dst_port": {},
	"alpn": {}, "authority": {}, "unique_id": {}, "netns": {}, "aws_vpce_id": {}, "azure_link_id": {},
	"gcp_psc_id": {}, "ssl.version": {}, "ssl.cn": {}, "ssl.cipher": {}, "ssl.verified": {},
}

// tlvText is a TLV's value as text, or as hex if it is not printable ASCII
// (UNIQUE_ID is opaque bytes).
func tlvText(tlvs []proxyproto.TLV, typ proxyproto.PP2Type) string {
	for _, t := range tlvs {
		if t.Type != typ {
			continue
		}
		for _, c := range t.Value {
			if c < 0x20 || c > 0x7e {
				return hex.EncodeToString(t.Value)
			}
		}
		return string(t.Value)
	}
	return ""
}

// tlvUTF8 is a TLV whose value the spec says is UTF-8 text (AUTHORITY, a
// host name; NETNS, a namespace name): as text when it is valid UTF-8
// without control characters, else as hex, so a placeholder never carries
// bytes that could break a header or a log line.
func tlvUTF8(tlvs []proxyproto.TLV, typ proxyproto.PP2Type) string {
	for _, t := range tlvs {
		if t.Type != typ {
			continue
		}
		if !utf8.Valid(t.Value) {
			return hex.EncodeToString(t.Value)
		}
		for _, r := range string(t.Value) {
			if unicode.IsControl(r) {
				return hex.EncodeToString(t.Value)
			}
		}
		return string(t.Value)
	}
	return ""
}

func addrHost(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap().String()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap().String()
	case *net.UnixAddr:
		if a.Name == "" {
			return "@"
		}
		return a.Name
	}
	return ""
}

func addrPort(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return strconv.Itoa(a.Port)
	case *net.UDPAddr:
		return strconv.Itoa(a.Port)
	}
	return ""
}
