// Command etcd is upstream etcd's server, built from go.etcd.io/etcd/server/v3
// so the test control plane gets an etcd version matching its Kubernetes release
// (Debian's etcd is too old for Kubernetes 1.36 watches).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
