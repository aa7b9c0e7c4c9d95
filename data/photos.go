// Package data feeds training with synthetic pairs: it loads the HR photos
// of a directory once, keeps them in memory as 8-bit planes, and produces
// batches of degraded pairs ahead of the trainer on a pool of goroutines.
//
// Pair k of a stream is a function of (seed, k) only: its photo comes from
// a per-epoch shuffle and its crop, augmentation and degradation from the
// generator rng.New(seed).Child(k). The same seed therefore gives the same
// batches whatever the number of workers, and `tsdsr degrade` writes the
// same pairs a Loader would produce.
package data

import (
	"container/list"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"tsdsr/degrade"
	"tsdsr/imageio"
	"tsdsr/rng"
)

// DefaultCacheBytes bounds the memory of decoded photos when OpenDir is
// given 0: enough for a few hundred photos of a megapixel.
const DefaultCacheBytes = 1 << 30

// imageExts are the file name extensions OpenDir picks up.
var imageExts = []string{".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}

// Photos is the set of HR photos of one directory with a decoded-photo
// cache. Photos are decoded on first use and kept as 8-bit RGB planes (a
// quarter of float32) until the cache exceeds its byte budget, when the
// least recently used are dropped and decoded again on demand. It is safe
// for concurrent use.
type Photos struct {
	dir   string
	names []string
	limit int64

	mu    sync.Mutex
	cache map[int]*entry
	lru   *list.List // of int (photo index), most recent first
	bytes int64
}

type entry struct {
	done  chan struct{} // closed when img/err are set
	img   *Photo8
	err   error
	elem  *list.Element // nil while decoding
	bytes int64
}

// OpenDir lists the images of dir (by extension, sorted by name, not
// recursive). cacheBytes bounds the decoded cache (0: DefaultCacheBytes).
func OpenDir(dir string, cacheBytes int64) (*Photos, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("data: no images (%s) in %s", strings.Join(imageExts, " "), dir)
	}
	slices.Sort(names)
	if cacheBytes <= 0 {
		cacheBytes = DefaultCacheBytes
	}
	return &Photos{dir: dir, names: names, limit: cacheBytes, cache: map[int]*entry{}, lru: list.New()}, nil
}

// Len is the number of photos.
func (p *Photos) Len() int { return len(p.names) }

// Name is the file name of photo i.
func (p *Photos) Name(i int) string { return p.names[i] }

// Photo returns photo i decoded, from the cache when it is there. Callers
// asking for a photo being decoded wait for that decode instead of
// repeating it.
func (p *Photos) Photo(i int) (*Photo8, error) {
	p.mu.Lock()
	if e, ok := p.cache[i]; ok {
		if e.elem != nil {
			p.lru.MoveToFront(e.elem)
		}
		p.mu.Unlock()
		<-e.done
		return e.img, e.err
	}
	e := &entry{done: make(chan struct{})}
	p.cache[i] = e
	p.mu.Unlock()

	m, err := imageio.ReadFile(filepath.Join(p.dir, p.names[i]), nil)
	if err == nil {
		e.img = NewPhoto8(m)
	} else {
		e.err = fmt.Errorf("data: %w", err)
	}
	close(e.done)

	p.mu.Lock()
	defer p.mu.Unlock()
	if e.err != nil {
		delete(p.cache, i) // retry on the next request
		return nil, e.err
	}
	e.bytes = int64(len(e.img.Pix))
	e.elem = p.lru.PushFront(i)
	p.bytes += e.bytes
	for p.bytes > p.limit && p.lru.Len() > 1 {
		old := p.lru.Back()
		j := old.Value.(int)
		p.bytes -= p.cache[j].bytes
		p.lru.Remove(old)
		delete(p.cache, j)
	}
	return e.img, nil
}

// CachedBytes reports the memory held by decoded photos.
func (p *Photos) CachedBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Photo8 is a photo kept as three 8-bit planes (gray is replicated when
// cropped, not stored three times). It implements degrade.Photo.
type Photo8 struct {
	Width, Height, Channels int
	Pix                     []uint8 // Channels planes of Width*Height
}

// NewPhoto8 quantises m's colour planes to 8 bits (exact for 8-bit
// sources; 16-bit ones lose their low bits, which training does not use).
func NewPhoto8(m *imageio.Image) *Photo8 {
	p := &Photo8{Width: m.Width, Height: m.Height, Channels: m.Channels, Pix: make([]uint8, len(m.Pix))}
	for i, v := range m.Pix {
		p.Pix[i] = imageio.Quantize8(v)
	}
	return p
}

// Size returns the photo size.
func (p *Photo8) Size() (int, int) { return p.Width, p.Height }

// Region returns [x0, x1) x [y0, y1) as a 3-channel float image.
func (p *Photo8) Region(x0, y0, x1, y1 int) *imageio.Image {
	w, h := x1-x0, y1-y0
	out := imageio.NewImage(w, h, 3)
	n := p.Width * p.Height
	for c := range 3 {
		src := p.Pix[min(c, p.Channels-1)*n:]
		dst := out.Plane(c)
		for y := range h {
			row := src[(y0+y)*p.Width+x0:][:w]
			d := dst[y*w : (y+1)*w]
			for x, v := range row {
				d[x] = float32(v) / 255
			}
		}
	}
	return out
}

// PhotoIndex returns which photo pair k of the stream for seed uses: the
// photos are visited in a fresh shuffle each epoch of Len() pairs.
func (p *Photos) PhotoIndex(seed uint64, k int) int {
	n := p.Len()
	epoch := k / n
	perm := rng.New(seed ^ 0x6a09e667f3bcc909).Child(uint64(epoch)).Perm(n)
	return perm[k%n]
}

// Pair builds pair k of the stream for seed (see the package comment).
// Its Params carry the photo's file name, the seed and k.
func (p *Photos) Pair(seed uint64, k int, o *degrade.Options) (*degrade.Pair, error) {
	i := p.PhotoIndex(seed, k)
	ph, err := p.Photo(i)
	if err != nil {
		return nil, err
	}
	pair, err := degrade.SamplePair(ph, rng.New(seed).Child(uint64(k)), o)
	if err != nil {
		return nil, fmt.Errorf("data: %s: %w", p.names[i], err)
	}
	pair.Params.Source, pair.Params.Seed, pair.Params.Index = p.names[i], seed, k
	return pair, nil
}
