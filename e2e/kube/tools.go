//go:build tools

// Package kube pins the Kubernetes components the cluster tests run:
// kube-apiserver and kube-proxy, built from k8s.io/kubernetes through the
// Go module proxy by build.sh. It is a module of its own so that no
// Kubernetes module enters the plugin's module graph.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
