package command

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// service is the source's Kubernetes Service as its Helm values describe
// it, for the manifests --output-dir writes.
type service struct {
	typ                   string // LoadBalancer, NodePort, ClusterIP
	externalTrafficPolicy string
	annotations           map[string]string
	ports                 []servicePortSpec
}

// secretMount is a Secret the Deployment mounts read-only at path, as the
// source's chart does (its certificates).
type secretMount struct {
	secret, path string
}

// servicePortSpec is one port of the Service: what clients use, and the
// container port behind it.
type servicePortSpec struct {
	name       string
	port       int
	targetPort int
}

// manifests writes the Kubernetes objects for the plan, as one multi-
// document YAML file: a ConfigMap holding the Caddyfile, a Deployment that
// runs it as a non-root user on a read-only root filesystem with the
// probes on the probe server, a Service with the source's type, traffic
// policy, ports and balancer annotations, and a PodDisruptionBudget.
func (p *plan) manifests(caddyfile []byte) ([]byte, error) {
	const name = "caddy"
	labels := map[string]any{"app": name}

	// Container ports, named as the Service's target ports.
	svc := p.service
	if svc == nil {
		svc = &service{typ: "LoadBalancer"}
		for _, l := range p.listeners {
			port := l.port
			for _, m := range p.portMaps {
				if host, listen, _ := strings.Cut(m, ":"); listen == strconv.Itoa(l.port) {
					port, _ = strconv.Atoi(host)
				}
			}
			kind := "http"
			if l.https {
				kind = "https"
			}
			svc.ports = append(svc.ports, servicePortSpec{name: fmt.Sprintf("%s-%d", kind, l.port), port: port, targetPort: l.port})
		}
	}
	var containerPorts, servicePorts []any
	named := map[int]string{}
	for _, sp := range svc.ports {
		named[sp.targetPort] = sp.name
	}
	lowPort := false
	for _, l := range p.listeners {
		portName, ok := named[l.port]
		if !ok {
			portName = fmt.Sprintf("port-%d", l.port)
		}
		containerPorts = append(containerPorts, map[string]any{"name": portName, "containerPort": l.port, "protocol": "TCP"})
		lowPort = lowPort || l.port < 1024
	}
	for _, sp := range svc.ports {
		if !slices.ContainsFunc(p.listeners, func(l listener) bool { return l.port == sp.targetPort }) {
			return nil, fmt.Errorf("the Service's port %s (%d) targets container port %d, which the Caddyfile does not listen on", sp.name, sp.port, sp.targetPort)
		}
		servicePorts = append(servicePorts, map[string]any{"name": sp.name, "port": sp.port, "targetPort": sp.name, "protocol": "TCP"})
	}

	container := map[string]any{
		"name": name,
		// Built by examples/kubernetes/Dockerfile; its command is caddy run
		// --config /etc/caddy/Caddyfile --adapter caddyfile.
		"image": "caddy-realip:2.11.9",
		"ports": containerPorts,
		"securityContext": map[string]any{
			"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
			"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
			"capabilities": map[string]any{"drop": []any{"ALL"}},
		},
		"volumeMounts": []any{
			map[string]any{"name": "caddyfile", "mountPath": "/etc/caddy", "readOnly": true},
			// Caddy's data (its internal CA, certificates) and config
			// autosave: the only writable places.
			map[string]any{"name": "data", "mountPath": "/data"},
			map[string]any{"name": "config", "mountPath": "/config"},
		},
	}
	volumes := []any{
		map[string]any{"name": "caddyfile", "configMap": map[string]any{"name": name}},
		map[string]any{"name": "data", "emptyDir": map[string]any{}},
		map[string]any{"name": "config", "emptyDir": map[string]any{}},
	}
	for _, m := range p.secretMounts {
		mounts := container["volumeMounts"].([]any)
		container["volumeMounts"] = append(mounts, map[string]any{"name": "secret-" + m.secret, "mountPath": m.path, "readOnly": true})
		volumes = append(volumes, map[string]any{"name": "secret-" + m.secret, "secret": map[string]any{"secretName": m.secret}})
	}
	if pr := p.probe; pr != nil {
		containerPorts = append(containerPorts, map[string]any{"name": "probe", "containerPort": pr.port, "protocol": "TCP"})
		container["ports"] = containerPorts
		ready, live := pr.paths[len(pr.paths)-1], pr.paths[0]
		container["readinessProbe"] = map[string]any{"httpGet": map[string]any{"path": ready, "port": "probe"}}
		container["livenessProbe"] = map[string]any{"httpGet": map[string]any{"path": live, "port": "probe"}}
	}
	podSecurity := map[string]any{"runAsNonRoot": true, "fsGroup": 65532, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}
	if lowPort {
		// A non-root process may bind the source's ports below 1024
		// (a safe sysctl, allowed in every pod).
		podSecurity["sysctls"] = []any{map[string]any{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}}
	}
	objects := []any{
		map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": name},
			"data": map[string]any{"Caddyfile": string(caddyfile)}},
		map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": name, "labels": labels},
			"spec": map[string]any{
				"replicas": 2,
				"selector": map[string]any{"matchLabels": labels},
				"template": map[string]any{
					"metadata": map[string]any{"labels": labels},
					"spec": map[string]any{
						"securityContext": podSecurity,
						"containers":      []any{container},
						"volumes":         volumes,
					},
				},
			}},
	}
	svcSpec := map[string]any{"type": svc.typ, "selector": labels, "ports": servicePorts}
	if svc.typ == "" {
		svcSpec["type"] = "LoadBalancer"
	}
	if svc.externalTrafficPolicy != "" {
		svcSpec["externalTrafficPolicy"] = svc.externalTrafficPolicy
	}
	svcMeta := map[string]any{"name": name}
	if len(svc.annotations) > 0 {
		ann := map[string]any{}
		for k, v := range svc.annotations {
			ann[k] = v
		}
		svcMeta["annotations"] = ann
	}
	objects = append(objects,
		map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": svcMeta, "spec": svcSpec},
		map[string]any{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": map[string]any{"name": name},
			"spec": map[string]any{"minAvailable": 1, "selector": map[string]any{"matchLabels": labels}}})

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by caddy real-ip %s: the Caddyfile beside this file, and the\n# objects that run it. Build the image with examples/kubernetes/Dockerfile.\n", p.command)
	for _, o := range objects {
		b.WriteString("---\n")
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(o); err != nil {
			return nil, err
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}
