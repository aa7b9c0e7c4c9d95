package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"tsdsr/catalog"
)

func init() {
	register(&command{name: "models", summary: "list the built-in models and their measured scores", run: runModels})
}

func runModels(ctx context.Context, args []string) error {
	if len(args) > 0 {
		fmt.Fprintln(os.Stderr, "usage: tsdsr models")
		return errUsage
	}
	list, err := catalog.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDEFAULT\tSCORES (RealSR 128->512)\tDESCRIPTION")
	for _, m := range list {
		var keys []string
		for k := range m.Scores {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var sc []string
		for _, k := range keys {
			sc = append(sc, fmt.Sprintf("%s=%.4g", k, m.Scores[k]))
		}
		def := ""
		if m.Default {
			def = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, def, strings.Join(sc, " "), m.Description)
	}
	return tw.Flush()
}
