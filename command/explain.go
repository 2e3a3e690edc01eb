package command

import (
	"bufio"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/caddy-realip/realip/handler"
)

func explainCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "explain --trusted-ips RANGES --header NAME [--recursive] [--trusted-hops N] --peer ADDR:PORT (--value V [--value V2 ...] | < request)",
		Short: "Shows, step by step, which client address the real_ip handler would choose",
		Long: `
Runs the real_ip handler's own judgement offline. Give the handler's
settings (--trusted-ips, --header, --recursive, --trusted-hops), the peer the request comes
from (--peer 10.0.0.5:41000, or @ for a peer on a UNIX socket), and the
header's value, one --value per header line; or, without --value, a raw HTTP
request on standard input. It prints each entry the walk looked at and ends
with a line "client: <addr>:<port> (source <peer|header>)".

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
			ex, err := handler.Explain(handler.Handler{TrustedIPs: trusted, RealIPHeader: name, RealIPRecursive: handler.Recursive(recursive), RealIPTrustedHops: hops}, peer, header)
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
	return c
}

// maxStdinHeader is what explain reads of standard input: Caddy's default
// max_header_size (net/http's default limit, 1 MiB, is Go's, not Caddy's).
const maxStdinHeader = 16 << 10
