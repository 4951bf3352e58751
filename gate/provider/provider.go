// Package provider is an OpenFeature provider (github.com/open-feature/go-sdk)
// for cfg: applications evaluate gates and configs through the standard
// OpenFeature API, in-process, with no network call.
//
//	c, _ := client.New(client.Options{AgentURL: "http://127.0.0.1:7481", CacheDir: "/var/cache/cfg"})
//	p, _ := provider.New(c, provider.Options{
//		Gates:   []string{"feed/new_ranker"},
//		Configs: []string{"feed/settings"},
//	})
//	openfeature.SetProviderAndWait(p)
//	of := openfeature.NewDefaultClient()
//	on := of.Boolean(ctx, "feed/new_ranker", false, openfeature.NewEvaluationContext(userID, map[string]any{"country": "US"}))
//	size := of.Int(ctx, "feed/settings:page_size", 20, openfeature.EvaluationContext{})
//
// Flags:
//
//   - A gate (Options.Gates) is a boolean flag named by its config name. The
//     evaluation context's targeting key is the unit's ID and its other
//     attributes the unit's attributes (strings, booleans, numbers of any
//     Go type). The reason is TARGETING_MATCH when a rule decided with 0 or
//     100 %, SPLIT when the unit's bucket decided, DEFAULT (false) when no
//     rule held. The variant is "on" or "off"; the flag metadata holds the
//     deciding rule ("rule", "rule_index", "percent") and the version
//     ("revision", "commit", and "override", "override_version" while a
//     canary's override is served, "from_cache" when it was read from the
//     agent's cache).
//   - A field of a config (Options.Configs) is a flag named CONFIG:PATH,
//     PATH being field names (and list indexes) separated by dots
//     ("feed/settings:ranker.name"); the config itself, CONFIG, is an
//     object flag. Any flag type may read a field of its JSON type: a
//     boolean, a string, a number (an integer for Int), anything for
//     Object (numbers as int64 when integers, float64 otherwise; a copy the
//     application may change). The reason is STATIC, or CACHED when the
//     config was read from the agent's cache; the metadata holds the
//     version.
//
// A gate check that cannot decide fails closed: the evaluation is an error,
// and OpenFeature returns the caller's default (pass false to fail
// closed), with the reason in the error message and its code:
// TARGETING_KEY_MISSING (a sampling rule decided and there is no targeting
// key), INVALID_CONTEXT (an attribute of the wrong type), PARSE_ERROR (the
// gate as distributed does not compile in this application),
// PROVIDER_NOT_READY (not loaded yet), GENERAL (an application's restraint
// failed). A flag that is neither a followed gate nor a field of a
// followed config is FLAG_NOT_FOUND; a field of another type,
// TYPE_MISMATCH.
//
// Every new version of a gate or config (a commit, a canary's override, its
// removal) emits PROVIDER_CONFIGURATION_CHANGED with the flags that changed:
// the gate's name; for a config, its name and CONFIG:PATH for every field
// whose value changed (at any depth). At most 64 events wait for the SDK;
// beyond, events are dropped and logged.
//
// Init (or InitWithContext) starts following every gate and config and
// waits for their first versions, from the agent or, when it is down, from
// its cache, for at most Options.InitTimeout; Shutdown stops following.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/cfg-dev/cfg/client"
	"github.com/cfg-dev/cfg/gate"
	"github.com/cfg-dev/cfg/repo"
)

// Name is the provider's name in OpenFeature's metadata.
const Name = "cfg"

// eventBuffer is how many events may wait for the SDK.
const eventBuffer = 64

// Options configure a Provider.
type Options struct {
	// Gates are the gate configs served as boolean flags.
	Gates []string
	// Configs are the configs whose fields are served as flags.
	Configs []string
	// Restraints are the application's own restraints, for the gates.
	Restraints map[string]gate.NewRestraint
	// InitTimeout bounds how long Init waits for the first versions; 5s
	// if zero.
	InitTimeout time.Duration
	// Logger receives what the provider has to say (versions refused,
	// events dropped); nil discards it.
	Logger *slog.Logger
}

// Provider is an OpenFeature provider serving cfg's gates and configs. Its
// methods are safe for concurrent use.
type Provider struct {
	c       *client.Client
	opts    Options
	log     *slog.Logger
	gates   map[string]*liveGate
	configs map[string]*liveConfig
	events  chan openfeature.Event

	mu     sync.Mutex // guards cancel, lives and wg across Init and Shutdown
	cancel context.CancelFunc
	lives  []*gate.Live
	wg     *sync.WaitGroup // the config watchers of this Init
}

// liveGate is a gate followed, once Init has started following it.
type liveGate struct {
	live atomic.Pointer[gate.Live]
	had  atomic.Bool // a version was in effect: the next ones are changes
	meta atomic.Pointer[gateMetadata]
}

// gateMetadata is the flag metadata of the decisions of one version of a
// gate, made once per version: per deciding rule, and for no rule. The SDK
// hands applications copies (ProviderResolutionDetail.ResolutionDetail).
type gateMetadata struct {
	version *gate.Version
	byRule  []openfeature.FlagMetadata
	none    openfeature.FlagMetadata
}

func newGateMetadata(v *gate.Version, rules []gate.RuleInfo) *gateMetadata {
	m := &gateMetadata{version: v, none: versionMetadata(v)}
	for i, r := range rules {
		m.byRule = append(m.byRule, ruleMetadata(v, i, r.Name, r.Percent))
	}
	return m
}

func ruleMetadata(v *gate.Version, i int, name string, percent float64) openfeature.FlagMetadata {
	meta := versionMetadata(v)
	meta["rule"] = name
	meta["rule_index"] = int64(i)
	meta["percent"] = percent
	return meta
}

// metadata returns the flag metadata of a decision that succeeded.
func (lg *liveGate) metadata(d gate.Decision) openfeature.FlagMetadata {
	if m := lg.meta.Load(); m != nil && m.version == d.Version && d.Rule < len(m.byRule) {
		if d.Rule < 0 {
			return m.none
		}
		return m.byRule[d.Rule]
	}
	// A version whose metadata is not made yet.
	if d.Rule < 0 {
		return versionMetadata(d.Version)
	}
	return ruleMetadata(d.Version, d.Rule, d.RuleName, d.Percent())
}

var (
	_ openfeature.FeatureProvider          = (*Provider)(nil)
	_ openfeature.ContextAwareStateHandler = (*Provider)(nil)
	_ openfeature.EventHandler             = (*Provider)(nil)
)

// liveConfig is a config followed through the client library.
type liveConfig struct {
	cur    atomic.Pointer[configVersion]
	loaded chan struct{}
	once   sync.Once
}

// configVersion is one version of a config, decoded once.
type configVersion struct {
	version *gate.Version
	value   any // json.Number for numbers
	err     error
}

// New returns a provider of the gates and configs c reads. It checks the
// names; following starts with Init.
func New(c *client.Client, opts Options) (*Provider, error) {
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = 5 * time.Second
	}
	p := &Provider{
		c: c, opts: opts, log: opts.Logger,
		gates:   map[string]*liveGate{},
		configs: map[string]*liveConfig{},
		events:  make(chan openfeature.Event, eventBuffer),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range opts.Gates {
		if err := repo.CheckName(name); err != nil {
			return nil, fmt.Errorf("provider: gate: %w", err)
		}
		p.gates[name] = &liveGate{}
	}
	for _, name := range opts.Configs {
		if err := repo.CheckName(name); err != nil {
			return nil, fmt.Errorf("provider: config: %w", err)
		}
		if _, ok := p.gates[name]; ok {
			return nil, fmt.Errorf("provider: %q is both a gate and a config", name)
		}
		p.configs[name] = &liveConfig{loaded: make(chan struct{})}
	}
	return p, nil
}

// Metadata returns the provider's name, "cfg".
func (p *Provider) Metadata() openfeature.Metadata { return openfeature.Metadata{Name: Name} }

// Hooks returns no hooks.
func (p *Provider) Hooks() []openfeature.Hook { return nil }

// EventChannel returns the provider's events.
func (p *Provider) EventChannel() <-chan openfeature.Event { return p.events }

// Init is InitWithContext with a background context.
func (p *Provider) Init(evalCtx openfeature.EvaluationContext) error {
	return p.InitWithContext(context.Background(), evalCtx)
}

// InitWithContext starts following every gate and config and waits until
// each has its first version (for at most Options.InitTimeout). It returns
// what did not load, or compile: those flags fail, the others work.
func (p *Provider) InitWithContext(ctx context.Context, _ openfeature.EvaluationContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return nil // already following
	}
	run, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	wg := &sync.WaitGroup{}
	p.wg = wg
	for _, name := range slices.Sorted(maps.Keys(p.gates)) {
		lg := p.gates[name]
		l, err := gate.Follow(run, p.c, name, gate.FollowOptions{
			Options:  gate.Options{Restraints: p.opts.Restraints},
			Logger:   p.log,
			OnUpdate: func(s gate.Status) { p.gateChanged(lg, s) },
		})
		if err != nil {
			return err // names were checked by New
		}
		lg.live.Store(l)
		p.lives = append(p.lives, l)
	}
	for _, name := range slices.Sorted(maps.Keys(p.configs)) {
		lc := p.configs[name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.c.Watch(run, name, func(cfg client.Config) { p.configChanged(name, lc, cfg) })
		}()
	}

	wait, cancelWait := context.WithTimeout(ctx, p.opts.InitTimeout)
	defer cancelWait()
	var errs []error
	for _, l := range p.lives {
		if err := l.Wait(wait); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.configs)) {
		select {
		case <-p.configs[name].loaded:
			if v := p.configs[name].cur.Load(); v.err != nil {
				errs = append(errs, v.err)
			}
		case <-wait.Done():
			errs = append(errs, fmt.Errorf("config %q: not loaded: %w", name, context.Cause(wait)))
		}
	}
	return errors.Join(errs...)
}

// Shutdown is ShutdownWithContext with a background context.
func (p *Provider) Shutdown() { p.ShutdownWithContext(context.Background()) }

// ShutdownWithContext stops following; evaluations keep the versions they
// had.
func (p *Provider) ShutdownWithContext(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	p.cancel = nil
	lives, wg := p.lives, p.wg
	p.lives, p.wg = nil, nil
	done := make(chan struct{})
	go func() {
		for _, l := range lives {
			l.Stop()
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// emit sends an event to the SDK without blocking.
func (p *Provider) emit(e openfeature.Event) {
	e.ProviderName = Name
	select {
	case p.events <- e:
	default:
		p.log.Warn("OpenFeature event dropped: too many waiting", "type", e.EventType, "flags", e.FlagChanges)
	}
}

func versionMetadata(v *gate.Version) openfeature.FlagMetadata {
	m := map[string]any{"revision": v.Revision, "commit": v.Commit}
	if v.Override != "" {
		m["override"] = v.Override
		m["override_version"] = v.OverrideVersion
	}
	if v.FromCache {
		m["from_cache"] = true
	}
	return m
}

func (p *Provider) gateChanged(lg *liveGate, s gate.Status) {
	if s.Err != nil {
		return // refused (and logged by Follow): nothing changed
	}
	lg.meta.Store(newGateMetadata(s.Version, s.Gate.Rules()))
	if !lg.had.Swap(true) {
		return // the first version
	}
	p.emit(openfeature.Event{EventType: openfeature.ProviderConfigChange, ProviderEventDetails: openfeature.ProviderEventDetails{
		Message:       fmt.Sprintf("gate %s: %s", s.Name, s.Version),
		FlagChanges:   []string{s.Name},
		EventMetadata: versionMetadata(s.Version),
	}})
}

func (p *Provider) configChanged(name string, lc *liveConfig, cfg client.Config) {
	next := &configVersion{version: gate.VersionOf(cfg)}
	dec := json.NewDecoder(bytes.NewReader(cfg.Data))
	dec.UseNumber()
	if err := dec.Decode(&next.value); err != nil {
		next.err = fmt.Errorf("config %q %s: not JSON: %w", name, next.version, err)
		p.log.Error("config version refused", "config", name, "version", next.version.String(), "err", err)
		if prev := lc.cur.Load(); prev != nil && prev.err == nil {
			return // keep the previous one
		}
	}
	prev := lc.cur.Swap(next)
	lc.once.Do(func() { close(lc.loaded) })
	if prev == nil || prev.err != nil || next.err != nil {
		return // the first version, or none to compare with
	}
	changed := changedPaths(name, "", prev.value, next.value, nil)
	if len(changed) == 0 {
		changed = []string{name} // a new version with the same value
	}
	p.emit(openfeature.Event{EventType: openfeature.ProviderConfigChange, ProviderEventDetails: openfeature.ProviderEventDetails{
		Message:       fmt.Sprintf("config %s: %s", name, next.version),
		FlagChanges:   changed,
		EventMetadata: versionMetadata(next.version),
	}})
}

// changedPaths appends the flag keys of the values that differ between a
// and b: name for the whole config, name:path for its fields.
func changedPaths(name, path string, a, b any, out []string) []string {
	if reflect.DeepEqual(a, b) {
		return out
	}
	key := name
	if path != "" {
		key = name + ":" + path
	}
	out = append(out, key)
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch a := a.(type) {
	case map[string]any:
		if b, ok := b.(map[string]any); ok {
			keys := slices.Sorted(maps.Keys(a))
			for k := range b {
				if _, ok := a[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				out = changedPaths(name, join(k), a[k], b[k], out)
			}
		}
	case []any:
		if b, ok := b.([]any); ok {
			for i := range max(len(a), len(b)) {
				var x, y any
				if i < len(a) {
					x = a[i]
				}
				if i < len(b) {
					y = b[i]
				}
				out = changedPaths(name, join(strconv.Itoa(i)), x, y, out)
			}
		}
	}
	return out
}

// unit builds the gate unit of an evaluation context.
func unit(flat openfeature.FlattenedContext) gate.Unit {
	var u gate.Unit
	if len(flat) > 1 {
		u.Attrs = make([]gate.Attr, 0, len(flat)-1)
	}
	for k, v := range flat {
		if k == openfeature.TargetingKey {
			u.ID, _ = v.(string)
			continue
		}
		u.Attrs = append(u.Attrs, gate.AnyAttr(k, v))
	}
	return u
}

// BooleanEvaluation checks a gate, or reads a boolean field of a config.
func (p *Provider) BooleanEvaluation(ctx context.Context, flag string, defaultValue bool, flat openfeature.FlattenedContext) openfeature.BoolResolutionDetail {
	g, ok := p.gates[flag]
	if !ok {
		return field[bool](p, flag, defaultValue, boolOf)
	}
	l := g.live.Load()
	if l == nil {
		return openfeature.BoolResolutionDetail{Value: defaultValue, ProviderResolutionDetail: failed(openfeature.NewProviderNotReadyResolutionError(
			fmt.Sprintf("gate %q: the provider has not been initialized", flag)))}
	}
	d := l.Check(unit(flat))
	if d.Err != nil {
		detail := failed(resolutionError(d.Err))
		if d.Version != nil {
			detail.FlagMetadata = versionMetadata(d.Version)
		}
		return openfeature.BoolResolutionDetail{Value: false, ProviderResolutionDetail: detail}
	}
	detail := openfeature.ProviderResolutionDetail{Reason: openfeature.DefaultReason, Variant: "off", FlagMetadata: g.metadata(d)}
	if d.Rule >= 0 {
		detail.Reason = openfeature.TargetingMatchReason
		if d.Sampled {
			detail.Reason = openfeature.SplitReason
		}
	}
	if d.Pass {
		detail.Variant = "on"
	}
	return openfeature.BoolResolutionDetail{Value: d.Pass, ProviderResolutionDetail: detail}
}

func failed(e openfeature.ResolutionError) openfeature.ProviderResolutionDetail {
	return openfeature.ProviderResolutionDetail{Reason: openfeature.ErrorReason, ResolutionError: e, FlagMetadata: openfeature.FlagMetadata{}}
}

// resolutionError gives a failed check's reason its OpenFeature code.
func resolutionError(err error) openfeature.ResolutionError {
	var ae *gate.AttrError
	var ce *gate.CompileError
	switch msg := err.Error(); {
	case errors.Is(err, gate.ErrNoUnitID):
		return openfeature.NewTargetingKeyMissingResolutionError(msg)
	case errors.As(err, &ae):
		return openfeature.NewInvalidContextResolutionError(msg)
	case errors.Is(err, gate.ErrNotLoaded):
		return openfeature.NewProviderNotReadyResolutionError(msg)
	case errors.As(err, &ce):
		return openfeature.NewParseErrorResolutionError(msg)
	default:
		return openfeature.NewGeneralResolutionError(msg)
	}
}

// StringEvaluation reads a string field of a config.
func (p *Provider) StringEvaluation(ctx context.Context, flag string, defaultValue string, _ openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	return field[string](p, flag, defaultValue, func(v any) (string, bool) { s, ok := v.(string); return s, ok })
}

// FloatEvaluation reads a numeric field of a config.
func (p *Provider) FloatEvaluation(ctx context.Context, flag string, defaultValue float64, _ openfeature.FlattenedContext) openfeature.FloatResolutionDetail {
	return field[float64](p, flag, defaultValue, func(v any) (float64, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return 0, false
		}
		f, err := n.Float64()
		return f, err == nil
	})
}

// IntEvaluation reads an integer field of a config.
func (p *Provider) IntEvaluation(ctx context.Context, flag string, defaultValue int64, _ openfeature.FlattenedContext) openfeature.IntResolutionDetail {
	return field[int64](p, flag, defaultValue, func(v any) (int64, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return 0, false
		}
		i, err := n.Int64()
		return i, err == nil
	})
}

// ObjectEvaluation reads a config, or a field of it, of any type.
func (p *Provider) ObjectEvaluation(ctx context.Context, flag string, defaultValue any, _ openfeature.FlattenedContext) openfeature.InterfaceResolutionDetail {
	return field[any](p, flag, defaultValue, func(v any) (any, bool) { return plain(v), true })
}

func boolOf(v any) (bool, bool) { b, ok := v.(bool); return b, ok }

// field resolves a flag CONFIG or CONFIG:PATH of a followed config.
func field[T any](p *Provider, flag string, defaultValue T, as func(any) (T, bool)) openfeature.GenericResolutionDetail[T] {
	fail := func(e openfeature.ResolutionError) openfeature.GenericResolutionDetail[T] {
		return openfeature.GenericResolutionDetail[T]{Value: defaultValue, ProviderResolutionDetail: failed(e)}
	}
	name, path, _ := strings.Cut(flag, ":")
	lc, ok := p.configs[name]
	if !ok {
		if _, isGate := p.gates[flag]; isGate {
			return fail(openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q is a gate: evaluate it as a boolean", flag)))
		}
		return fail(openfeature.NewFlagNotFoundResolutionError(fmt.Sprintf("flag %q: not a gate or a field of a config this provider follows", flag)))
	}
	cv := lc.cur.Load()
	if cv == nil {
		return fail(openfeature.NewProviderNotReadyResolutionError(fmt.Sprintf("config %q: not loaded yet", name)))
	}
	if cv.err != nil {
		return fail(openfeature.NewParseErrorResolutionError(cv.err.Error()))
	}
	v := cv.value
	if path != "" {
		for seg := range strings.SplitSeq(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				v, ok = x[seg]
			case []any:
				i, err := strconv.Atoi(seg)
				ok = err == nil && i >= 0 && i < len(x)
				if ok {
					v = x[i]
				}
			default:
				ok = false
			}
			if !ok {
				return fail(openfeature.NewFlagNotFoundResolutionError(fmt.Sprintf("config %q has no field %q", name, path)))
			}
		}
	}
	t, ok := as(v)
	if !ok {
		return fail(openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q: got %s, want %s", flag, jsonType(v), reflect.TypeFor[T]())))
	}
	reason := openfeature.StaticReason
	if cv.version.FromCache {
		reason = openfeature.CachedReason
	}
	return openfeature.GenericResolutionDetail[T]{Value: t, ProviderResolutionDetail: openfeature.ProviderResolutionDetail{
		Reason: reason, FlagMetadata: versionMetadata(cv.version),
	}}
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case json.Number:
		return "the number " + v.String()
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// plain copies a decoded value for an application: numbers become int64
// (integers) or float64.
func plain(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = plain(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = plain(x)
		}
		return l
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	}
	return v
}
