// Command kubectl-gang is the kubectl plugin `kubectl gang`: put it on PATH
// (make kubectl-gang builds bin/kubectl-gang) and run kubectl gang list or
// kubectl gang describe WORKLOAD.
package main

import (
	"os"

	"github.com/workload-coscheduling/workload-coscheduling/internal/gangctl"
)

func main() {
	if err := gangctl.NewCommand(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}
