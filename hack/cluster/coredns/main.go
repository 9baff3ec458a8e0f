// Command coredns is a slim CoreDNS (github.com/coredns/coredns), built from the Go module
// proxy by scripts/cluster-addons: the cluster DNS of a local single-node cluster.
//
// Upstream's coredns.go blank-imports core/plugin, which pulls in every plugin (and the
// AWS, Azure and GCP SDKs). This main instead narrows dnsserver.Directives to the plugins a
// cluster-local DNS needs and imports only those; there is no forward plugin (the cluster
// has no upstream resolvers). The order of the list is the order the plugins run in:
// upstream's plugin.cfg order, except template, which runs after kubernetes here so that
// `template ANY ANY { rcode NXDOMAIN }` answers what kubernetes leaves (names outside the
// cluster zone, reverse lookups it falls through on) with NXDOMAIN rather than the
// SERVFAIL of an empty plugin chain.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics" // the "prometheus" directive
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives: upstream's core/dnsserver/zdirectives.go, narrowed (template moved after
// kubernetes).
var directives = []string{
	"reload",
	"ready",
	"health",
	"prometheus",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"hosts",
	"kubernetes",
	"template",
	"loop",
}

func init() {
	// dnsserver reads Directives when a Corefile is loaded (coremain.Run), not at init.
	if err := dnsserver.SetDirectives(directives); err != nil {
		panic(err)
	}
}

func main() { coremain.Run() }
