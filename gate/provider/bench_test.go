package provider_test

import (
	"context"
	"testing"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
	"github.com/open-feature/go-sdk/openfeature/memprovider"

	"github.com/cfg-dev/cfg/gate/internal/cputime"
	"github.com/cfg-dev/cfg/gate/internal/disttest"
	"github.com/cfg-dev/cfg/gate/provider"
)

// benchGate is the 3-rule gate of gate.BenchmarkCheck (gate.BenchGate(3)),
// written in Starlark: BenchUnit goes through every rule and its three
// restraints, and the last rule samples.
const benchGate = `load("@cfg//gate.cinc", "attr_in", "gate", "number", "rule", "version")

def restraints(v):
    return [attr_in("country", ["US", "CA", "MX"]), number("friends", ">=", 100), version("app_version", ">=", v)]

export(gate("feed/new_ranker", [
    rule("rule 0", 100, restraints("9.0.0")),
    rule("rule 1", 100, restraints("9.0.0")),
    rule("rule 2", 10, restraints("2.3.0")),
]))
`

// benchContext is BenchUnit as an evaluation context.
var benchContext = openfeature.NewEvaluationContext("user-12345", map[string]any{
	"country": "US", "employee": false, "friends": 120, "app_version": "2.4.1", "locale": "en_US",
})

func benchClient(b *testing.B, p openfeature.FeatureProvider) *openfeature.Client {
	api := isolated.NewAPI()
	b.Cleanup(func() { api.Shutdown(context.Background()) })
	if err := api.SetProviderAndWait(context.Background(), p); err != nil {
		b.Fatal(err)
	}
	return api.NewClient()
}

// BenchmarkOpenFeature evaluates the 3-rule gate through the OpenFeature
// client, with cfg's provider, as an application does.
func BenchmarkOpenFeature(b *testing.B) {
	d := disttest.New(b, map[string]string{"source/feed/new_ranker.cconf": benchGate})
	p, err := provider.New(d.Client(), provider.Options{Gates: []string{"feed/new_ranker"}})
	if err != nil {
		b.Fatal(err)
	}
	of := benchClient(b, p)
	ctx := context.Background()
	if det, err := of.BooleanValueDetails(ctx, "feed/new_ranker", false, benchContext); err != nil || det.Reason != openfeature.SplitReason || det.FlagMetadata["rule"] != "rule 2" {
		b.Fatalf("%+v, %v", det, err)
	}
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		of.Boolean(ctx, "feed/new_ranker", false, benchContext)
	}
	stop()
}

// BenchmarkInMemoryProvider evaluates a boolean flag through the same
// OpenFeature client with the go-sdk's in-memory provider: the SDK's own
// cost, the peer of BenchmarkOpenFeature.
func BenchmarkInMemoryProvider(b *testing.B) {
	p := memprovider.NewInMemoryProvider(map[string]memprovider.InMemoryFlag{
		"feed/new_ranker": {State: memprovider.Enabled, DefaultVariant: "on", Variants: map[string]any{"on": true, "off": false}},
	})
	of := benchClient(b, p)
	ctx := context.Background()
	if !of.Boolean(ctx, "feed/new_ranker", false, benchContext) {
		b.Fatal("flag off")
	}
	b.ReportAllocs()
	stop := cputime.Start(b)
	for b.Loop() {
		of.Boolean(ctx, "feed/new_ranker", false, benchContext)
	}
	stop()
}
