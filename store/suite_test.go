package store_test

import (
	"path/filepath"
	"testing"

	"github.com/cfg-dev/cfg/store"
	"github.com/cfg-dev/cfg/store/storetest"
)

func TestBoltConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		path := filepath.Join(t.TempDir(), "cfg.db")
		return func() (store.Store, error) { return store.OpenBolt(path) }
	})
}

func TestEtcdConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Open {
		cli, prefix := store.EtcdForTest(t)
		return func() (store.Store, error) { return store.OpenEtcd(t.Context(), cli, prefix) }
	})
}
