package daemon

import (
	"context"

	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/cfg-dev/cfg/repo"
	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/wire"
)

// decodeHostReport decodes and checks a host report: one JSON object,
// nothing after it.
func decodeHostReport(r io.Reader) (wire.HostReport, error) {
	var rep wire.HostReport
	if err := decodeOne(r, "host report", &rep); err != nil {
		return wire.HostReport{}, err
	}
	if err := checkHostReport(rep); err != nil {
		return wire.HostReport{}, fmt.Errorf("host report: %w", err)
	}
	return rep, nil
}

// checkHostReport checks a decoded host report.
func checkHostReport(rep wire.HostReport) error {
	if rep.Applied < 0 {
		return fmt.Errorf("applied: got %d, want a revision (0 or more)", rep.Applied)
	}
	for k := range rep.Labels {
		if k == "" {
			return errors.New("empty label name")
		}
	}
	for _, c := range rep.Configs {
		if err := repo.CheckName(c); err != nil {
			return err
		}
	}
	if rep.Metrics != "" {
		if u, err := url.Parse(rep.Metrics); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("metrics: got %q, want an http:// or https:// URL", rep.Metrics)
		}
	}
	for _, o := range rep.Overrides {
		if err := checkID(o.ID); err != nil {
			return fmt.Errorf("overrides: %v", err)
		}
		if err := repo.CheckName(o.Config); err != nil {
			return fmt.Errorf("overrides: %v", err)
		}
	}
	return nil
}

// wireHost is h as GET /v1/hosts lists it.
func wireHost(h store.Host) wire.Host {
	return wire.Host{Name: h.Name, Labels: h.Labels, Configs: h.Configs, Applied: h.Applied, LastSeen: h.LastSeen,
		Metrics: h.Metrics, Overrides: h.Overrides}
}

// checkHostName reports whether h may name a host.
func checkHostName(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host name %.40q: want 1 to 253 bytes", h)
	}
	for _, r := range h {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("invalid host name %q", h)
		}
	}
	return nil
}

// hostRegistry holds the hosts' last reports in memory; flush writes the
// ones that changed to the store.
type hostRegistry struct {
	mu    sync.Mutex
	hosts map[string]store.Host
	dirty map[string]bool
}

func newHostRegistry(hosts []store.Host) *hostRegistry {
	r := &hostRegistry{hosts: map[string]store.Host{}, dirty: map[string]bool{}}
	for _, h := range hosts {
		r.hosts[h.Name] = h
	}
	return r
}

func (r *hostRegistry) report(h store.Host) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[h.Name] = h
	r.dirty[h.Name] = true
}

func (r *hostRegistry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hosts)
}

// list returns the hosts sorted by name.
func (r *hostRegistry) list() []store.Host {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Collect(maps.Values(r.hosts))
	slices.SortFunc(out, func(a, b store.Host) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// flush writes the hosts reported since the last flush to st.
func (r *hostRegistry) flush(ctx context.Context, st store.Store) error {
	r.mu.Lock()
	var hosts []store.Host
	for name := range r.dirty {
		hosts = append(hosts, r.hosts[name])
	}
	clear(r.dirty)
	r.mu.Unlock()
	if len(hosts) == 0 {
		return nil
	}
	if err := st.PutHosts(ctx, hosts, hostReportTTL); err != nil {
		r.mu.Lock()
		for _, h := range hosts {
			r.dirty[h.Name] = true
		}
		r.mu.Unlock()
		return err
	}
	return nil
}

// hostList returns the hosts' last reports, sorted by name: those made to
// this daemon and, on a shared store, those the store holds, made to any
// daemon of the cluster (the later of two reports of a host wins).
func (d *Daemon) hostList(ctx context.Context) ([]store.Host, error) {
	local := d.hosts.list()
	if d.cluster == nil {
		return local, nil
	}
	stored, err := d.store.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]store.Host, len(stored)+len(local))
	for _, h := range stored {
		byName[h.Name] = h
	}
	for _, h := range local {
		if s, ok := byName[h.Name]; !ok || h.LastSeen.After(s.LastSeen) {
			byName[h.Name] = h
		}
	}
	out := slices.Collect(maps.Values(byName))
	slices.SortFunc(out, func(a, b store.Host) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
