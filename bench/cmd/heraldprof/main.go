// Command heraldprof is herald's command line with profiling around it,
// for finding where a benchmark's time and memory go: herald serve
// exposes no profiling endpoint, so the comparison driver runs this build
// instead when asked for profiles.
//
//	heraldprof -cpuprofile cpu.pprof -pprof 127.0.0.1:6060 serve --config herald.yaml
//	go tool pprof -top cpu.pprof
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/heap
//
// The CPU profile covers the whole life of the process and is written
// when the command returns (after SIGTERM and the graceful shutdown);
// -pprof serves net/http/pprof on a separate loopback listener meanwhile;
// -memprofilerate 512 makes heap profiles fine enough to attribute the
// memory of each idle connection.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	runpprof "runtime/pprof"

	"github.com/heraldhq/herald/internal/cli"
)

func main() {
	fs := flag.NewFlagSet("heraldprof", flag.ExitOnError)
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file`")
	addr := fs.String("pprof", "", "serve net/http/pprof on this loopback `address`")
	memRate := fs.Int("memprofilerate", 0, "sample one allocation per this many `bytes` (runtime.MemProfileRate; 0: Go's default of 512 KiB); small values show per-connection costs in heap profiles but slow every allocation down")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: heraldprof [-cpuprofile FILE] [-pprof ADDR] COMMAND [ARGS...]")
		os.Exit(2)
	}
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}
	if *addr != "" {
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "heraldprof:", err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		// The listener lives as long as the process.
		go func() { _ = http.Serve(ln, mux) }()
	}
	var f *os.File
	if *cpu != "" {
		var err error
		if f, err = os.Create(*cpu); err != nil {
			fmt.Fprintln(os.Stderr, "heraldprof:", err)
			os.Exit(1)
		}
		if err := runpprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "heraldprof:", err)
			os.Exit(1)
		}
	}
	os.Args = append(os.Args[:1], fs.Args()...)
	code := cli.Main()
	if f != nil {
		runpprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "heraldprof:", err)
			code = 1
		}
	}
	os.Exit(code)
}
