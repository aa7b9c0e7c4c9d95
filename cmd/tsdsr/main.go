// Command tsdsr is a one-step diffusion super-resolution tool (TSD-SR) with an
// embedded model: upscale photos, evaluate, synthesise training pairs, train,
// serve over HTTP and benchmark.
//
// Each subcommand lives in its own file and registers itself in init.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"syscall"

	"tsdsr/internal/atomicfile"
	"tsdsr/internal/parallel"
	"tsdsr/internal/termsafe"
)

// command is one subcommand: run parses args itself (with a flag.FlagSet
// named after the command) and returns an error to print.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("tsdsr: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error already explained to the user by a FlagSet.
var errUsage = errors.New("usage")

// parseFlags parses a command's flags: -h returns flag.ErrHelp (usage
// printed, exit 0), any other flag error (already printed by fs) errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// newFlagSet is a command's FlagSet: parse errors return (see parseFlags),
// and its usage is the text usage, then the flags.
func newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// jobFlags are the --threads and --quiet flags of the long-running
// commands (train, sample).
type jobFlags struct {
	threads int
	quiet   bool
}

func (j *jobFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&j.threads, "threads", 0, "worker threads (0 = all cores)")
	fs.BoolVar(&j.quiet, "quiet", false, "no progress output")
}

// start applies --threads and returns where progress goes: stderr, or
// nil with --quiet.
func (j *jobFlags) start() io.Writer {
	if j.threads > 0 {
		parallel.SetThreads(j.threads)
	}
	if j.quiet {
		return nil
	}
	return os.Stderr
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tsdsr: one-step diffusion super-resolution (TSD-SR) on the CPU")
	fmt.Fprintln(w, "\nUsage: tsdsr <command> [flags]   (tsdsr <command> -h for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	listCommands(w, commands)
}

// listCommands prints one line per command, sorted by name.
func listCommands(w io.Writer, cmds map[string]*command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "tsdsr: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	ctx, stop := interruptContext(os.Stderr)
	defer stop()
	if path := os.Getenv("TSDSR_CPUPROFILE"); path != "" {
		// For engineers: where a command's time goes (go tool pprof).
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if err := c.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if !errors.Is(err, errUsage) {
			// Errors quote file names, which may hold escape sequences.
			fmt.Fprintf(os.Stderr, "tsdsr %s: %s\n", c.name, termsafe.Escape(err.Error(), true))
		}
		return 1
	}
	return 0
}

// interruptContext returns a context that the first Ctrl-C or SIGTERM
// cancels, so commands stop cleanly (between files or steps, with no
// partial file). A second one does not wait: it removes the temporary
// files of writes in flight (atomicfile.Abort), so no target is half
// written and no temporary file is left, and exits with status 130.
func interruptContext(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		cancel()
		fmt.Fprintln(stderr, "tsdsr: stopping (interrupt again to stop at once)")
		<-sigs
		atomicfile.Abort()
		fmt.Fprintln(stderr, "tsdsr: stopped; writes in flight were discarded")
		os.Exit(130)
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel()
	}
}
