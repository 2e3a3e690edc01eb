package command

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/spf13/cobra"

	"github.com/caddy-realip/realip/internal/configcheck"
)

func checkCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check [--config FILE] [--adapter NAME] [--address ADMIN]",
		Short: "Finds what would make real_ip misjudge a client in a config: order, wrappers, placeholders, trust",
		Long: `
Reads a config (--config FILE, adapted with --adapter, or the Caddyfile in
the current folder; or the running config from the admin API at --address)
and reports, with its place and the fix, each thing that makes the real_ip
handler or listener wrapper misjudge a client: a handler that runs before
real_ip (another plugin's "order ... first"), a listener wrapper before
real_ip's (caddy-l4's, tls), {http.real_ip.*} placeholders where no real_ip
handler runs, proxy_protocol mode without the wrapper, a servers block
whose key matches no server; and, as warnings, trust of every address on a
public listener, a CDN's header believed from private addresses, and no
port left for probes. The exit status is 1 when something would misjudge a
client.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			config, caddyfile, from, err := loadConfigForCheck(cmd)
			if err != nil {
				return err
			}
			findings, err := configcheck.Check(config, caddyfile)
			if err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			out := cmd.OutOrStdout()
			misjudges := 0
			for _, f := range findings {
				fmt.Fprintln(out, f)
				if f.Misjudges {
					misjudges++
				}
			}
			if len(findings) == 0 {
				fmt.Fprintf(out, "%s: nothing found that would make real_ip misjudge a client\n", from)
				return nil
			}
			fmt.Fprintf(out, "%s: %d finding(s), %d that would misjudge a client\n", from, len(findings), misjudges)
			if misjudges > 0 {
				cmd.SilenceUsage = true
				return errMisjudges
			}
			return nil
		},
	}
	c.Flags().String("config", "", "the config file (default: ./Caddyfile)")
	c.Flags().String("adapter", "", "the config adapter (default: caddyfile for a Caddyfile, none for .json)")
	c.Flags().String("address", "", "the admin API address of a running Caddy (localhost:2019): check the config it runs")
	return c
}

var errMisjudges = fmt.Errorf("the config would misjudge a client (see above)")

// loadConfigForCheck returns the JSON config to check, the Caddyfile it was
// adapted from (if any), and a name for it.
func loadConfigForCheck(cmd *cobra.Command) (config []byte, caddyfile, from string, err error) {
	if address, _ := cmd.Flags().GetString("address"); address != "" {
		if !strings.Contains(address, "://") {
			address = "http://" + address
		}
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(strings.TrimSuffix(address, "/") + "/config/")
		if err != nil {
			return nil, "", "", fmt.Errorf("reading the running config: %w", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, "", "", fmt.Errorf("reading the running config from %s: %s %v", address, resp.Status, err)
		}
		return body, "", "the config running at " + address, nil
	}
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		path = "Caddyfile"
	}
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, "", "", err
	}
	adapter, _ := cmd.Flags().GetString("adapter")
	if adapter == "" && filepath.Ext(path) != ".json" {
		adapter = "caddyfile"
	}
	if adapter == "" {
		return body, "", path, nil
	}
	a := caddyconfig.GetAdapter(adapter)
	if a == nil {
		return nil, "", "", fmt.Errorf("unknown config adapter '%s'", adapter)
	}
	config, _, err = a.Adapt(body, map[string]any{"filename": path})
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", path, err)
	}
	if adapter == "caddyfile" {
		caddyfile = string(body)
	}
	return config, caddyfile, path, nil
}
