package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

func init() {
	register(&command{name: "version", summary: "print version and build information", run: func(ctx context.Context, args []string) error {
		v := "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					v += " " + s.Value
				}
			}
		}
		fmt.Printf("tsdsr %s %s %s/%s simd=%v\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, simdBuild)
		return nil
	}})
}
