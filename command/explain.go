package command

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caddy-realip/realip/handler"
	"github.com/caddy-realip/realip/internal/configcheck"
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
			if cmd.Flags().Changed("config") || cmd.Flags().Changed("address") {
				var err error
				if cfg, err = handlerFromConfig(cmd); err != nil {
					return err
				}
				if name = cfg.RealIPHeader; name == "" {
					name = handler.HeaderXRealIP
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
				if err != nil {
					if limited.N <= 0 {
						return fmt.Errorf("standard input: the request's header is larger than %d bytes, Caddy's default max_header_size (Caddy answers such a request with 431); stopped reading there", maxStdinHeader)
					}
					return fmt.Errorf("reading a raw HTTP request from standard input (or give --value): %w", err)
				}
				header = req.Header
			}
			ex, err := handler.Explain(cfg, peer, header)
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
	return c
}

// handlerFromConfig picks the real_ip handler a request for --host and
// --path would meet in the config, and prints where it is.
func handlerFromConfig(cmd *cobra.Command) (handler.Handler, error) {
	config, _, from, err := loadConfigForCheck(cmd)
	if err != nil {
		return handler.Handler{}, err
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]json.RawMessage `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return handler.Handler{}, fmt.Errorf("%s: not a Caddy JSON config: %v", from, err)
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
		return handler.Handler{}, fmt.Errorf("%s: no server named %q", from, want)
	}
	for _, n := range names {
		raw, where, notes := configcheck.RealIPFor(cfg.Apps.HTTP.Servers[n], "server "+n+", ", host, path)
		if raw == nil {
			continue
		}
		var h handler.Handler
		if err := json.Unmarshal(raw, &h); err != nil {
			return handler.Handler{}, fmt.Errorf("%s: %s: %v", from, where, err)
		}
		// Static sources are ranges in the config; others are read where
		// Caddy runs (a published list from its storage), not here.
		for _, src := range h.TrustedIPsSourcesRaw {
			var s struct {
				Source string   `json:"source"`
				Ranges []string `json:"ranges"`
			}
			_ = json.Unmarshal(src, &s)
			if s.Source == "static" {
				h.TrustedIPs = append(h.TrustedIPs, s.Ranges...)
			} else {
				notes = append(notes, fmt.Sprintf("trusted_ips_source %s: its ranges are not read here; only trusted_ips and static sources are judged", s.Source))
			}
		}
		h.TrustedIPsSourcesRaw = nil
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "handler: %s (%s, host %q, path %q)\n", where, from, host, path)
		for _, note := range notes {
			fmt.Fprintf(out, "note: %s\n", note)
		}
		return h, nil
	}
	return handler.Handler{}, fmt.Errorf("%s: no real_ip handler runs for host %q and path %q on %s", from, host, path, strings.Join(names, ", "))
}

// maxStdinHeader is what explain reads of standard input: Caddy's default
// max_header_size (net/http's default limit, 1 MiB, is Go's, not Caddy's).
const maxStdinHeader = 16 << 10
