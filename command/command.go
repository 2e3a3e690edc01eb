// Package command registers `caddy real-ip`, the plugin's commands (grouped
// as `caddy storage` groups Caddy's): `import kong` and `import
// ingress-nginx` write a Caddyfile from those products' settings, and
// `explain` shows the handler's decision for a request step by step.
package command

import (
	"fmt"
	"os"
	"path/filepath"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// docsFooter ends the help of every caddy real-ip command.
const docsFooter = `Full documentation of these commands:
	https://github.com/caddy-realip/realip#readme (README.md), and docs/kong.md,
	docs/ingress-nginx.md and docs/operations.md beside it`

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "real-ip",
		Short: "Commands of the caddy-realip plugin (client IP behind load balancers)",
		Long: `
Commands of the caddy-realip plugin, which keeps the real client IP behind
load balancers with Kong's and nginx's options (the real_ip handler and
listener wrapper).

  caddy real-ip import kong           Kong's proxy_listen, trusted_ips, real_ip_header,
                                      real_ip_recursive as a Caddyfile
  caddy real-ip import ingress-nginx  an ingress-nginx controller ConfigMap as a Caddyfile
  caddy real-ip explain               which client address the real_ip handler would
                                      choose for a request, step by step
  caddy real-ip check                 what in a config (a file, or the running one) would
                                      make real_ip misjudge a client: order, wrappers, trust
`,
		CobraFunc: func(cmd *cobra.Command) {
			importCmd := &cobra.Command{
				Use:   "import",
				Short: "Writes a Caddyfile from another proxy's client-IP settings",
			}
			importCmd.AddCommand(kongCommand(), ingressNginxCommand())
			cmd.AddCommand(importCmd, explainCommand(), checkCommand())
			// Caddy's root help ends every command's help with its own
			// documentation's address; these commands are documented here.
			cmd.SetHelpTemplate((&cobra.Command{}).HelpTemplate() + "\n" + docsFooter + "\n")
		},
	})
}

func kongCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "kong [--conf kong.conf] [--helm-values FILE ...] [--set k=v ...] [--upstream URL] [--json]",
		Short: "Writes a Caddyfile from Kong's proxy_listen, trusted_ips, real_ip_header and real_ip_recursive",
		Long: `
Reads KONG_PROXY_LISTEN, KONG_TRUSTED_IPS, KONG_REAL_IP_HEADER and
KONG_REAL_IP_RECURSIVE from the environment, and the same keys from the
kong.conf given with --conf; the environment wins, as in Kong, and Kong's
defaults fill in what neither sets. Prints a Caddyfile with one site per
proxy_listen entry (--json: the adapted JSON). Listen flags without a Caddy
equivalent become comments that say what Caddy does instead.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			confPath, _ := cmd.Flags().GetString("conf")
			conf := map[string]string{}
			if confPath != "" {
				f, err := os.Open(confPath)
				if err != nil {
					return err
				}
				defer f.Close()
				if conf, err = readKongConf(f); err != nil {
					return fmt.Errorf("%s: %w", confPath, err)
				}
			}
			var chart *kongChart
			files, _ := cmd.Flags().GetStringArray("helm-values")
			sets, _ := cmd.Flags().GetStringArray("set")
			if len(files) > 0 || len(sets) > 0 {
				var err error
				if chart, err = readKongChart(files, sets); err != nil {
					return err
				}
			}
			p, err := kongPlanWithChart(os.Environ(), conf, confPath, chart)
			if err != nil {
				return err
			}
			p.upstream, _ = cmd.Flags().GetString("upstream")
			if p.upstream != "" && len(p.trustedIPs) > 0 {
				p.headerUp = kongUpstreamHeaders
				p.dropPrefix = true
			}
			return write(cmd, p)
		},
	}
	c.Flags().String("conf", "", "a kong.conf to read (the environment overrides it)")
	c.Flags().StringArray("helm-values", nil, "a values file of Kong's Helm chart (repeatable; later files override earlier, as helm -f); kong.conf and the environment override it")
	c.Flags().StringArray("set", nil, "a Helm --set key=value over the values files (repeatable)")
	addOutputFlags(c)
	return c
}

func ingressNginxCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "ingress-nginx (--configmap FILE | --helm-values FILE ... [--set k=v ...]) [--http-port N] [--https-port N] [--healthz-port N] [--upstream URL] [--json]",
		Short: "Writes a Caddyfile from an ingress-nginx controller ConfigMap's client-IP keys",
		Long: `
Reads the controller's ConfigMap manifest (YAML) and translates
use-proxy-protocol, proxy-protocol-header-timeout, use-forwarded-headers,
enable-real-ip, forwarded-for-header, compute-full-forwarded-for and
proxy-real-ip-cidr, with ingress-nginx's defaults and its template's
behaviour (real_ip_recursive on). --http-port and --https-port are the
controller's own flags (defaults 80 and 443). Other keys are listed in a
comment.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("configmap")
			files, _ := cmd.Flags().GetStringArray("helm-values")
			sets, _ := cmd.Flags().GetStringArray("set")
			httpPort, _ := cmd.Flags().GetInt("http-port")
			httpsPort, _ := cmd.Flags().GetInt("https-port")
			healthzPort, _ := cmd.Flags().GetInt("healthz-port")
			var p *plan
			switch {
			case path != "" && (len(files) > 0 || len(sets) > 0):
				return fmt.Errorf("give --configmap or --helm-values/--set, not both: the chart writes the ConfigMap from controller.config")
			case path != "":
				manifest, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				if p, err = ingressNginxPlan(manifest, path, httpPort, httpsPort, healthzPort); err != nil {
					return err
				}
			case len(files) > 0 || len(sets) > 0:
				chart, err := readIngressNginxChart(files, sets)
				if err != nil {
					return err
				}
				// The controller's own flags, when given here, win over
				// controller.extraArgs.
				for name, v := range map[string]*int{"http-port": &chart.httpPort, "https-port": &chart.httpsPort, "healthz-port": &chart.healthPort} {
					if cmd.Flags().Changed(name) {
						*v, _ = cmd.Flags().GetInt(name)
					}
				}
				if p, err = ingressNginxPlanFrom(chart.configMap, "Helm values "+chart.files, chart.httpPort, chart.httpsPort, chart.healthPort); err != nil {
					return err
				}
				p.untranslated = append(p.untranslated, chart.untranslated...)
				p.service = chart.service
				if !cmd.Flags().Changed("default-ssl-certificate") {
					if err := p.useDefaultCertificate(chart.defaultCert); err != nil {
						return err
					}
				}
			default:
				return fmt.Errorf("--configmap FILE or --helm-values FILE is required: the controller's ConfigMap manifest (kubectl -n ingress-nginx get configmap ingress-nginx-controller -o yaml), or the chart's values")
			}
			if ref, _ := cmd.Flags().GetString("default-ssl-certificate"); ref != "" {
				if err := p.useDefaultCertificate(ref); err != nil {
					return err
				}
			}
			p.upstream, _ = cmd.Flags().GetString("upstream")
			return write(cmd, p)
		},
	}
	c.Flags().String("default-ssl-certificate", "", "the controller's --default-ssl-certificate NAMESPACE/SECRET: served for every name, the Secret mounted by the --output-dir Deployment")
	c.Flags().String("configmap", "", "the controller ConfigMap manifest (YAML)")
	c.Flags().StringArray("helm-values", nil, "a values file of ingress-nginx's Helm chart (repeatable; later files override earlier, as helm -f): controller.config, controller.extraArgs, controller.service")
	c.Flags().StringArray("set", nil, "a Helm --set key=value over the values files (repeatable)")
	c.Flags().Int("http-port", 80, "the controller's --http-port")
	c.Flags().Int("https-port", 443, "the controller's --https-port")
	c.Flags().Int("healthz-port", 10254, "the controller's --healthz-port, where the kubelet's probes go (0: no probe server)")
	addOutputFlags(c)
	return c
}

func addOutputFlags(c *cobra.Command) {
	c.Flags().String("upstream", "", "the upstream URL for each site's reverse_proxy (without it: a respond placeholder)")
	c.Flags().Bool("json", false, "print the adapted JSON instead of the Caddyfile")
	c.Flags().String("output-dir", "", "write the Caddyfile and Kubernetes manifests (ConfigMap, Deployment, Service, PodDisruptionBudget) to this folder instead of printing")
	c.Flags().Bool("accept-more-trust", false, "write a config that trusts more than the source did instead of failing (PROXY listeners with nothing trusted)")
}

// write prints the plan as a Caddyfile, or as JSON with --json.
func write(cmd *cobra.Command, p *plan) error {
	p.acceptMoreTrust, _ = cmd.Flags().GetBool("accept-more-trust")
	if err := p.checkTrust(); err != nil {
		return err
	}
	for _, k := range p.untranslated {
		fmt.Fprintf(cmd.ErrOrStderr(), "caddy real-ip %s: not translated: %s\n", p.command, k)
	}
	out := p.caddyfile()
	if dir, _ := cmd.Flags().GetString("output-dir"); dir != "" {
		manifests, err := p.manifests(out)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for name, data := range map[string][]byte{"Caddyfile": out, "caddy.yaml": manifests} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "caddy real-ip %s: wrote %s and %s\n", p.command, filepath.Join(dir, "Caddyfile"), filepath.Join(dir, "caddy.yaml"))
		return nil
	}
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		var err error
		if out, err = adapt(out); err != nil {
			return err
		}
	}
	_, err := cmd.OutOrStdout().Write(out)
	return err
}
