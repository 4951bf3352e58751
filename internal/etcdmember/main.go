// Command etcdmember is etcd's server, built from the etcd release cfg
// depends on: the member the cluster tests and benchmarks run as a process
// of its own (internal/etcdproc builds and starts it).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
