// Package train is the harness shared by tsdsr's trainers (the flow-matching
// prior and the TSD-SR distillation): a run directory with atomic
// checkpoints and exact resume, a metrics log with a loss-curve plot, a
// progress bar, and a slog file log. The trainers themselves only supply one
// training step.
//
// A run directory holds
//
//	state.json                  the latest complete checkpoint (written last, atomically)
//	checkpoints/step-NNNNNNNN/  one checkpoint: <part>.safetensors per Part, state.json
//	                            (with the SHA-256 of every part file)
//	metrics.jsonl               one JSON object per step and per evaluation
//	loss.png                    the metrics plotted, refreshed at each checkpoint
//	train.log                   the slog text log (appended across resumes)
//
// Exact resume rests on two rules. Every random draw of step s comes from
// Rand(s) = rng.New(seed).Child(s), a function of the seed and the step only,
// so nothing about a generator's position needs saving. And every piece of
// state that changes during training (weights, optimiser moments and step
// count, EMA) is a Part saved bit for bit in float32. A run of 2 x 10 steps
// then ends with the same bits as one of 20.
//
// A resume refuses what it cannot trust: a part file whose SHA-256 differs
// from the one its state recorded, or that holds NaN or Inf. When the run's
// state.json is missing it resumes from the newest checkpoint's own record,
// and it never deletes a checkpoint whose record is not this run's (same
// seed and settings).
package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"tsdsr/internal/atomicfile"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// Part is a piece of training state saved with every checkpoint as
// <name>.safetensors. nn.AdamW and nn.EMA are Parts; Weights adapts
// parameters.
type Part interface {
	Save(path string) error
	Load(f *safetensors.File) error
}

// weights saves a parameter list as F32 under its names (diffusers keys for
// a model registered through nn.Params) and loads it back strictly.
type weights struct{ list func() []nn.Param }

// Weights returns the Part of every parameter under p, named as p lists
// them, so the file is a model checkpoint other tools can load.
func Weights(p *nn.Params) Part { return weights{p.List} }

// WeightList returns the Part of the given parameters only (for example
// the LoRA adapters of a frozen base).
func WeightList(ps []nn.Param) Part { return weights{func() []nn.Param { return ps }} }

func (w weights) Save(path string) error {
	return nn.Save(path, w.list(), safetensors.F32, map[string]string{"format": "pt"})
}

func (w weights) Load(f *safetensors.File) error {
	ps := w.list()
	if n := len(f.Names()); n != len(ps) {
		return fmt.Errorf("train: checkpoint holds %d tensors for %d parameters", n, len(ps))
	}
	for _, p := range ps {
		info, ok := f.Info(p.Name)
		if !ok {
			return fmt.Errorf("train: checkpoint lacks %s", p.Name)
		}
		if !tensor.SameShape(info.Shape, p.T.Shape) {
			return fmt.Errorf("train: %s has shape %v in the checkpoint, %v in the model", p.Name, info.Shape, p.T.Shape)
		}
	}
	for _, p := range ps {
		if err := f.ReadInto(p.Name, p.T.Data); err != nil {
			return err
		}
	}
	return nil
}

// checkFinite refuses a file holding NaN or Inf in any tensor: a run
// resumed from such a checkpoint only produces skipped steps.
func checkFinite(f *safetensors.File) error {
	var buf []float32
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		n := 1
		for _, d := range info.Shape {
			n *= d
		}
		if cap(buf) < n {
			buf = make([]float32, n)
		}
		if err := f.ReadInto(name, buf[:n]); err != nil {
			return err
		}
		for i, v := range buf[:n] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("train: %s[%d] is %v: the checkpoint holds non-finite values", name, i, v)
			}
		}
	}
	return nil
}

// Options configure a Run.
type Options struct {
	Dir    string
	Seed   uint64
	Resume bool // continue from Dir's latest checkpoint (a fresh start when there is none)
	// Config describes the run (model config, hyperparameters); it is saved
	// in every state.json, and a resumed run must describe itself identically,
	// so one directory never mixes two recipes.
	Config any
	Keep   int // checkpoints kept (default 2; older ones of this run are deleted)
}

// State is the JSON record of a checkpoint.
type State struct {
	Step       int             `json:"step"`       // optimiser steps done
	Seed       uint64          `json:"seed"`       // Rand(s) = rng.New(Seed).Child(s)
	Checkpoint string          `json:"checkpoint"` // directory relative to the run directory
	Parts      []string        `json:"parts"`
	Elapsed    float64         `json:"elapsed_s"` // training wall time over all sessions
	Samples    int64           `json:"samples"`   // training samples seen
	Time       time.Time       `json:"time"`
	Config     json.RawMessage `json:"config"`
	// SHA256 holds the hex SHA-256 of each part's file, checked on resume
	// (absent in checkpoints written before it existed).
	SHA256 map[string]string `json:"sha256,omitempty"`
}

// Run is one training run in a directory. It is not safe for concurrent use.
type Run struct {
	Dir string
	Log *slog.Logger

	opts    Options
	config  json.RawMessage
	parts   []string
	byName  map[string]Part
	logFile *os.File
	metrics *os.File

	step    int
	written map[int]bool // checkpoints this session saved (or began to)
	samples int64
	elapsed float64 // from earlier sessions
	started time.Time
}

// stateFile is the run directory's pointer to its latest checkpoint.
const stateFile = "state.json"

// Open creates (or reopens, with Resume) the run directory and its log.
// Without Resume, a directory that already holds a checkpoint is refused so
// that a finished run is never overwritten by mistake.
func Open(o Options) (*Run, error) {
	if o.Keep <= 0 {
		o.Keep = 2
	}
	cfg, err := json.Marshal(o.Config)
	if err != nil {
		return nil, fmt.Errorf("train: config: %w", err)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if !o.Resume {
		_, err := os.Stat(filepath.Join(o.Dir, stateFile))
		if steps, _ := checkpointSteps(o.Dir); err == nil || len(steps) > 0 {
			return nil, fmt.Errorf("train: %s already holds a checkpoint; pass --resume to continue it or choose another directory", o.Dir)
		}
	}
	lf, err := os.OpenFile(filepath.Join(o.Dir, "train.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	r := &Run{Dir: o.Dir, opts: o, config: cfg, byName: map[string]Part{}, logFile: lf, started: time.Now()}
	r.Log = slog.New(slog.NewTextHandler(lf, nil))
	return r, nil
}

// Add registers a Part under a file name (no extension); register every
// part before Restore.
func (r *Run) Add(name string, p Part) {
	if _, dup := r.byName[name]; dup || name == "" || strings.ContainsAny(name, `/\`) {
		panic("train: bad or duplicate part name " + name)
	}
	r.parts = append(r.parts, name)
	r.byName[name] = p
}

// Restore loads the latest checkpoint into the registered parts when
// resuming and returns the step to continue from (0 for a fresh run). It
// also drops metric lines written after that checkpoint, so a run that died
// between checkpoints does not log those steps twice.
//
// Without the run's state.json, the newest checkpoint that has its own
// record is used (and the run's record rewritten from it); checkpoints
// without any record are refused rather than trained over. Every part file
// must match its recorded SHA-256 and hold only finite values.
func (r *Run) Restore() (int, error) {
	st, err := ReadState(r.Dir)
	if errors.Is(err, os.ErrNotExist) {
		var found bool
		if st, found, err = newestCheckpoint(r.Dir); err != nil {
			return 0, err
		}
		if !found {
			r.Log.Info("start", "dir", r.Dir, "seed", r.opts.Seed, "config", string(r.config))
			return 0, r.openLog(0)
		}
		r.Log.Warn("state.json missing: resuming from the newest checkpoint's own record", "checkpoint", st.Checkpoint)
	} else if err != nil {
		return 0, err
	}
	if !jsonEqual(st.Config, r.config) {
		return 0, fmt.Errorf("train: the run's settings differ from the checkpoint's:\n  checkpoint %s\n  now        %s", st.Config, r.config)
	}
	if st.Seed != r.opts.Seed {
		return 0, fmt.Errorf("train: seed %d differs from the checkpoint's %d", r.opts.Seed, st.Seed)
	}
	dir := filepath.Join(r.Dir, st.Checkpoint)
	if st.SHA256 == nil {
		r.Log.Warn("checkpoint has no checksums (written by an older version): not verified", "checkpoint", st.Checkpoint)
	}
	for _, name := range r.parts {
		path := filepath.Join(dir, name+".safetensors")
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("train: resume: %w", err)
		}
		if want, ok := st.SHA256[name]; st.SHA256 != nil && (!ok || want != sha256Hex(b)) {
			return 0, fmt.Errorf("train: resume: %s does not match the SHA-256 recorded in its state (%q): the file changed after it was saved", path, want)
		}
		f, err := safetensors.Parse(b)
		if err != nil {
			return 0, fmt.Errorf("train: resume: %s: %w", path, err)
		}
		if err := checkFinite(f); err != nil {
			return 0, fmt.Errorf("train: resume from %s: %w", path, err)
		}
		if err := r.byName[name].Load(f); err != nil {
			return 0, fmt.Errorf("train: resume %s: %w", name, err)
		}
	}
	r.step, r.samples, r.elapsed = st.Step, st.Samples, st.Elapsed
	if _, err := os.Stat(filepath.Join(r.Dir, stateFile)); errors.Is(err, os.ErrNotExist) {
		if err := r.writeState(filepath.Join(r.Dir, stateFile), st); err != nil {
			return 0, err
		}
	}
	r.Log.Info("resume", "step", st.Step, "checkpoint", st.Checkpoint, "elapsed_s", st.Elapsed)
	return st.Step, r.openLog(st.Step)
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// checkpointSteps lists the step numbers of the checkpoint folders of a run
// directory, in increasing order.
func checkpointSteps(dir string) ([]int, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range ents {
		var s int
		if _, err := fmt.Sscanf(e.Name(), "step-%d", &s); err == nil && e.IsDir() && e.Name() == checkpointName(s) {
			steps = append(steps, s)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

func checkpointName(step int) string { return fmt.Sprintf("step-%08d", step) }

// newestCheckpoint returns the record of the newest checkpoint that has
// one; found is false when the directory holds no checkpoint at all, and a
// directory holding only checkpoints without a record is an error.
func newestCheckpoint(dir string) (State, bool, error) {
	steps, err := checkpointSteps(dir)
	if err != nil || len(steps) == 0 {
		return State{}, false, err
	}
	for i := len(steps) - 1; i >= 0; i-- {
		st, err := ReadState(filepath.Join(dir, "checkpoints", checkpointName(steps[i])))
		if err == nil {
			return st, true, nil
		}
	}
	return State{}, false, fmt.Errorf("train: %s has no state.json and none of its %d checkpoints has its own: refusing to start over beside them (move them away to start afresh)", dir, len(steps))
}

// jsonEqual compares two JSON documents by value (key order ignored).
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// ReadState returns the latest checkpoint record of a run directory.
func ReadState(dir string) (State, error) {
	var st State
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("train: %s: %w", filepath.Join(dir, stateFile), err)
	}
	return st, nil
}

// LatestPart returns the path of a part's file in a run directory's latest
// checkpoint (for example "ema" to sample from the averaged weights).
func LatestPart(dir, part string) (string, error) {
	st, err := ReadState(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, st.Checkpoint, part+".safetensors"), nil
}

// Rand returns the generator of step s: every random draw of a step comes
// from it, which makes a resumed run replay the draws of an uninterrupted one.
func (r *Run) Rand(s int) *rng.Rand { return rng.New(r.opts.Seed).Child(uint64(s)) }

// Step is the number of optimiser steps done (as restored or last saved).
func (r *Run) Step() int { return r.step }

// Elapsed is the training wall time over all sessions so far.
func (r *Run) Elapsed() time.Duration {
	return time.Duration((r.elapsed + time.Since(r.started).Seconds()) * float64(time.Second))
}

// Save writes a checkpoint after step optimiser steps: every part into
// checkpoints/step-NNNNNNNN/, then its state.json (with the parts'
// SHA-256), then the run's state.json (atomically, so the pointer always
// names a complete checkpoint), then deletes this run's oldest checkpoints
// beyond Keep.
func (r *Run) Save(step int) error {
	t0 := time.Now()
	rel := filepath.Join("checkpoints", checkpointName(step))
	dir := filepath.Join(r.Dir, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if r.written == nil {
		r.written = map[int]bool{}
	}
	r.written[step] = true
	sums := map[string]string{}
	for _, name := range r.parts {
		path := filepath.Join(dir, name+".safetensors")
		if err := r.byName[name].Save(path); err != nil {
			return fmt.Errorf("train: save %s: %w", name, err)
		}
		b, err := os.ReadFile(path) // the bytes on disk are what a resume reads
		if err != nil {
			return err
		}
		sums[name] = sha256Hex(b)
	}
	st := State{Step: step, Seed: r.opts.Seed, Checkpoint: rel, Parts: r.parts, Elapsed: r.Elapsed().Seconds(),
		Samples: r.samples, Time: time.Now().UTC(), Config: r.config, SHA256: sums}
	if err := r.writeState(filepath.Join(dir, stateFile), st); err != nil {
		return err
	}
	if err := r.writeState(filepath.Join(r.Dir, stateFile), st); err != nil {
		return err
	}
	r.step = step
	r.Log.Info("checkpoint", "step", step, "dir", rel, "save_s", time.Since(t0).Seconds())
	return r.prune(step)
}

func (r *Run) writeState(path string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// prune deletes this run's checkpoints but the newest Keep up to step, and
// those after it: they are left from a session that died while saving, and
// the run has since gone another way. A checkpoint is this run's when this
// session wrote it or its own state.json has the run's seed and settings;
// any other folder is kept (an empty one, a save that died before writing
// anything, is removed).
func (r *Run) prune(step int) error {
	steps, err := checkpointSteps(r.Dir)
	if err != nil {
		return err
	}
	kept := 0
	for i := len(steps) - 1; i >= 0; i-- {
		dir := filepath.Join(r.Dir, "checkpoints", checkpointName(steps[i]))
		st, err := ReadState(dir)
		if !r.written[steps[i]] && (err != nil || st.Seed != r.opts.Seed || !jsonEqual(st.Config, r.config)) {
			os.Remove(dir) // only succeeds on an empty folder
			continue
		}
		if steps[i] <= step && kept < r.opts.Keep {
			kept++
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic writes b to path so that readers see the old or the new
// file, never half (see internal/atomicfile).
func WriteFileAtomic(path string, b []byte) error { return atomicfile.WriteBytes(path, b) }

// WriteJSON writes v as indented JSON to a file of the run directory
// (atomically), for example the model's config.json.
func (r *Run) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(r.Dir, name), append(b, '\n'))
}

// Close flushes and closes the run's files.
func (r *Run) Close() error {
	var errs []error
	if r.metrics != nil {
		errs = append(errs, r.metrics.Close())
	}
	errs = append(errs, r.logFile.Close())
	return errors.Join(errs...)
}
