package command

// service is the source's Kubernetes Service as its Helm values describe
// it, for the manifests --output-dir writes.
type service struct {
	typ                   string // LoadBalancer, NodePort, ClusterIP
	externalTrafficPolicy string
	annotations           map[string]string
	ports                 []servicePortSpec
}

// servicePortSpec is one port of the Service: what clients use, and the
// container port behind it.
type servicePortSpec struct {
	name       string
	port       int
	targetPort int
}
