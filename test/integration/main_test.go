package integration

import (
	"flag"
	"io"
	"os"
	"testing"

	"google.golang.org/grpc/grpclog"
)

// TestMain keeps the logs of the in-process control plane readable: etcd's
// gRPC chatter is dropped, and the control plane logs at -v=1 unless told
// otherwise.
func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
	// The per-test loggers of the API server log at -v, 5 by default: a
	// request log line per call. -v on the command line still wins.
	if err := flag.Set("v", "1"); err != nil {
		panic(err)
	}
	flag.Parse()
	os.Exit(m.Run())
}
