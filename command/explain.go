package command

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/pires/go-proxyproto"

	"github.com/spf13/cobra"

	"github.com/caddy-realip/realip/handler"
	"github.com/caddy-realip/realip/internal/configcheck"
	"github.com/caddy-realip/realip/internal/conninfo"
	"github.com/caddy-realip/realip/internal/ipset"
	"github.com/caddy-realip/realip/ipsource"
)

func explainCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "explain (--trusted-ips RANGES --header NAME [--recursive] [--trusted-hops N] | --config FILE | --address ADMIN [--server NAME] [--host H] [--path P]) --peer ADDR:PORT (--value V [--value V2 ...] | < request)",
		Short: "Shows, step by step, which client address the real_ip handler would choose",
		Long: `
Runs the real_ip handler's own judgement offline. Give the handler's
settings (--trusted-ips, --header, --recursive, --trusted-hops), the peer the request comes
from (--peer 10.0.0.5:41000, or @ for a peer on a UNIX socket), and the
header's value, one --value per header line; or, without --value, a raw HTTP
request on standard input. With --config FILE (or --address ADMIN for the
running config), the handler's settings come from the real_ip handler a
request for --host and --path meets there. It prints each entry the walk
looked at and ends with a line "client: <addr>:<port> (source <peer|header>)".

  caddy real-ip explain --trusted-ips 10.0.0.0/8 --header X-Forwarded-For --recursive \
      --peer 10.0.0.5:41000 --value "203.0.113.7, 10.0.3.1"
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			trusted, _ := cmd.Flags().GetStringArray("trusted-ips")
			name, _ := cmd.Flags().GetString("header")
			recursive, _ := cmd.Flags().GetBool("recursive")
			hops, _ := cmd.Flags().GetInt("trusted-hops")
			peer, _ := cmd.Flags().GetString("peer")
			values, _ := cmd.Flags().GetStringArray("value")
			if peer == "" {
				return fmt.Errorf("--peer is required: the address:port the request comes from (or @ for a UNIX socket peer)")
			}
			cfg := handler.Handler{TrustedIPs: trusted, RealIPHeader: name, RealIPRecursive: handler.Recursive(recursive), RealIPTrustedHops: hops}
			wc := wrapperConfig{TrustedIPs: trusted}
			if cmd.Flags().Changed("config") || cmd.Flags().Changed("address") {
				var err error
				var w *wrapperConfig
				if cfg, w, err = handlerFromConfig(cmd); err != nil {
					return err
				}
				if name = cfg.RealIPHeader; name == "" {
					name = handler.HeaderXRealIP
				}
				wc.TrustedIPs = cfg.TrustedIPs
				if w != nil {
					wc = *w
				}
			}
			if wt, _ := cmd.Flags().GetStringArray("wrapper-trusted-ips"); len(wt) > 0 {
				wc.TrustedIPs = wt
			}
			var conn *conninfo.Info
			if pp, _ := cmd.Flags().GetString("proxy"); pp != "" {
				var err error
				if conn, peer, err = judgeProxy(cmd.OutOrStdout(), peer, pp, wc); err != nil {
					return err
				}
			}
			header := http.Header{}
			if len(values) > 0 {
				canonical, err := handler.CheckHeaderName(name)
				if err != nil {
					return err
				}
				header[canonical] = values
			} else {
				// http.ReadRequest keeps header lines as sent, one value
				// per line, as net/http hands them to the handler.
				// Read as Caddy would: at most its default header size
				// (a request over it gets 431 there), so a hostile or
				// endless input stops here.
				limited := &io.LimitedReader{R: cmd.InOrStdin(), N: maxStdinHeader}
				req, err := http.ReadRequest(bufio.NewReader(limited))
				switch {
				case err == io.EOF && conn != nil:
					// Only the PROXY header was given: a request without
					// forwarding headers.
					req = &http.Request{Header: http.Header{}}
				case err != nil:
					if limited.N <= 0 {
						return fmt.Errorf("standard input: the request's header is larger than %d bytes, Caddy's default max_header_size (Caddy answers such a request with 431); stopped reading there", maxStdinHeader)
					}
					return fmt.Errorf("reading a raw HTTP request from standard input (or give --value): %w", err)
				}
				header = req.Header
			}
			ex, err := handler.ExplainConn(cfg, peer, header, conn)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), ex.String())
			return err
		},
	}
	c.Flags().StringArray("trusted-ips", nil, "trusted_ips entries (repeatable; each may be a comma-separated list)")
	c.Flags().String("header", handler.HeaderXRealIP, "real_ip_header")
	c.Flags().Bool("recursive", false, "real_ip_recursive on")
	c.Flags().Int("trusted-hops", 0, "real_ip_trusted_hops")
	c.Flags().String("peer", "", "the request's peer, address:port, or @ for a UNIX socket peer")
	c.Flags().StringArray("value", nil, "a line of the header (repeatable, in the order sent)")
	c.Flags().String("config", "", "take the real_ip handler from this config file (adapted with --adapter) instead of --trusted-ips/--header")
	c.Flags().String("adapter", "", "the config adapter (default: caddyfile, none for .json)")
	c.Flags().String("address", "", "take the real_ip handler from the config running at this admin API address (localhost:2019)")
	c.Flags().String("server", "", "with --config/--address: the server's name (default: the first, by name, whose routes run a real_ip handler for --host and --path)")
	c.Flags().String("host", "", "with --config/--address: the request's host, for the routes' host matchers")
	c.Flags().String("path", "/", "with --config/--address: the request's path, for the routes' path matchers")
	c.Flags().String("proxy", "", `the connection's PROXY header, judged as the listener wrapper would: v1 text ("PROXY TCP4 203.0.113.9 10.0.0.1 5555 443") or v2 in hex; --peer is then the balancer`)
	c.Flags().StringArray("wrapper-trusted-ips", nil, "the listener wrapper's trusted_ips (default: the config's wrapper, else --trusted-ips)")
	return c
}

// handlerFromConfig picks the real_ip handler a request for --host and
// --path would meet in the config, and prints where it is.
func handlerFromConfig(cmd *cobra.Command) (handler.Handler, *wrapperConfig, error) {
	config, _, from, err := loadConfigForCheck(cmd)
	if err != nil {
		return handler.Handler{}, nil, err
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]json.RawMessage `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return handler.Handler{}, nil, fmt.Errorf("%s: not a Caddy JSON config: %v", from, err)
	}
	want, _ := cmd.Flags().GetString("server")
	host, _ := cmd.Flags().GetString("host")
	path, _ := cmd.Flags().GetString("path")
	names := make([]string, 0, len(cfg.Apps.HTTP.Servers))
	for n := range cfg.Apps.HTTP.Servers {
		if want == "" || n == want {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return handler.Handler{}, nil, fmt.Errorf("%s: no server named %q", from, want)
	}
	for _, n := range names {
		raw, where, notes := configcheck.RealIPFor(cfg.Apps.HTTP.Servers[n], "server "+n+", ", host, path)
		if raw == nil {
			continue
		}
		var h handler.Handler
		if err := json.Unmarshal(raw, &h); err != nil {
			return handler.Handler{}, nil, fmt.Errorf("%s: %s: %v", from, where, err)
		}
		// Static sources are ranges in the config; others are read where
		// Caddy runs (a published list from its storage), not here.
		for _, src := range h.TrustedIPsSourcesRaw {
			var s struct {
				Source string   `json:"source"`
				Ranges []string `json:"ranges"`
			}
			_ = json.Unmarshal(src, &s)
			switch s.Source {
			case "static":
				h.TrustedIPs = append(h.TrustedIPs, s.Ranges...)
			case "published":
				// The last good list, from the storage the running
				// server keeps it in.
				ranges, fetched, err := ipsource.StoredRanges(cmd.Context(), storageOf(config), src)
				if err != nil {
					notes = append(notes, fmt.Sprintf("trusted_ips_source published: no stored list to judge with (%v); only the other ranges are judged", err))
					continue
				}
				for _, r := range ranges {
					h.TrustedIPs = append(h.TrustedIPs, r.String())
				}
				notes = append(notes, fmt.Sprintf("trusted_ips_source published: %d ranges from the stored list (fetched %s)", len(ranges), fetched.Format(time.RFC3339)))
			default:
				notes = append(notes, fmt.Sprintf("trusted_ips_source %s: its ranges are not read here; only trusted_ips, static and published sources are judged", s.Source))
			}
		}
		h.TrustedIPsSourcesRaw = nil
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "handler: %s (%s, host %q, path %q)\n", where, from, host, path)
		for _, note := range notes {
			fmt.Fprintf(out, "note: %s\n", note)
		}
		// The server's real_ip listener wrapper, if it has one.
		var srv struct {
			ListenerWrappers []wrapperConfig `json:"listener_wrappers"`
		}
		_ = json.Unmarshal(cfg.Apps.HTTP.Servers[n], &srv)
		for i := range srv.ListenerWrappers {
			if srv.ListenerWrappers[i].Wrapper == "real_ip" {
				return h, &srv.ListenerWrappers[i], nil
			}
		}
		return h, nil, nil
	}
	return handler.Handler{}, nil, fmt.Errorf("%s: no real_ip handler runs for host %q and path %q on %s", from, host, path, strings.Join(names, ", "))
}

// wrapperConfig is what explain needs of a real_ip listener wrapper.
type wrapperConfig struct {
	Wrapper    string   `json:"wrapper"`
	TrustedIPs []string `json:"trusted_ips"`
	Untrusted  string   `json:"untrusted"`
}

// judgeProxy does what the listener wrapper does with a PROXY header (v1
// text, or v2 as hex) from peer: it returns the connection's information
// and the remote address the handler then sees, and says what happened.
func judgeProxy(out io.Writer, peer, raw string, wc wrapperConfig) (*conninfo.Info, string, error) {
	physical, err := netip.ParseAddrPort(peer)
	if err != nil {
		return nil, "", fmt.Errorf("--peer '%s': with --proxy, the balancer's address:port", peer)
	}
	physical = netip.AddrPortFrom(physical.Addr().Unmap(), physical.Port())
	var data []byte
	if strings.HasPrefix(raw, "PROXY ") {
		data = []byte(strings.TrimRight(raw, "\r\n") + "\r\n")
	} else if data, err = hex.DecodeString(strings.Join(strings.Fields(raw), "")); err != nil {
		return nil, "", fmt.Errorf("--proxy: a v1 header (PROXY TCP4 …) or a v2 header in hex: %v", err)
	}
	set, _, err := ipset.Parse(ipset.Expand(wc.TrustedIPs))
	if err != nil {
		return nil, "", fmt.Errorf("the wrapper's trusted_ips: %w", err)
	}
	info := &conninfo.Info{Physical: net.TCPAddrFromAddrPort(physical), Trusted: set.Contains(physical.Addr())}
	info.SetClient(info.Physical)
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, "", fmt.Errorf("the wrapper closes this connection: malformed PROXY header: %v", err)
	}
	if !info.Trusted {
		switch wc.Untrusted {
		case "reject":
			return nil, "", fmt.Errorf("the wrapper closes this connection: %s is not in its trusted_ips (untrusted reject)", physical)
		case "skip":
			return nil, "", fmt.Errorf("the wrapper reads nothing from %s (untrusted skip): the PROXY header reaches the server as HTTP and gets 400", physical)
		}
		fmt.Fprintf(out, "wrapper: %s is not in its trusted_ips: the PROXY header is read and thrown away; the client is the peer\n", physical)
		return info, physical.String(), nil
	}
	if info.Honour(h) {
		family := "TCP4"
		if h.TransportProtocol == proxyproto.TCPv6 {
			family = "TCP6"
		}
		fmt.Fprintf(out, "wrapper: %s is in its trusted_ips: PROXY v%d %s, the connection's remote address is %s\n", physical, h.Version, family, info.Source)
		return info, info.Source.String(), nil
	}
	command := "PROXY"
	if h.Command.IsLocal() {
		command = "LOCAL"
	}
	fmt.Fprintf(out, "wrapper: %s is in its trusted_ips: a v%d %s header without a client address (the balancer's own connection, or a relayed one it cannot name)\n", physical, h.Version, command)
	return info, physical.String(), nil
}

// maxStdinHeader is what explain reads of standard input: Caddy's default
// max_header_size (net/http's default limit, 1 MiB, is Go's, not Caddy's).
const maxStdinHeader = 16 << 10

// storageOf is the config's storage when it is a file system one, else
// Caddy's default: where the published sources keep their lists.
func storageOf(config []byte) certmagic.Storage {
	var cfg struct {
		Storage struct {
			Module string `json:"module"`
			Root   string `json:"root"`
		} `json:"storage"`
	}
	_ = json.Unmarshal(config, &cfg)
	if cfg.Storage.Module == "file_system" && cfg.Storage.Root != "" {
		return &certmagic.FileStorage{Path: cfg.Storage.Root}
	}
	return &certmagic.FileStorage{Path: caddy.AppDataDir()}
}
