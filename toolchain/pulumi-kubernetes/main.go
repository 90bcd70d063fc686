// Command pulumi-resource-kubernetes serves the Kubernetes resource provider.
//
// The provider module's own main embeds files that its release process
// generates and the module zip lacks, so this wrapper embeds the schema and
// Terraform mapping that the harness copies next to it from the module at
// build time (see harness/toolchain/pulumi.py).
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
