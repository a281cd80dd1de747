// Command tlogcheck verifies a transparency log's checkpoint, proofs, tiles and entry bundles with Go's
// reference implementations of C2SP signed-note (golang.org/x/mod/sumdb/note) and RFC 6962 / C2SP
// tlog-tiles (golang.org/x/mod/sumdb/tlog), independently of the registry's own Python code.
//
// Every input is a local file or an http(s) URL. With -url, the log's API (DESIGN.md §8) supplies them:
//
//	tlogcheck -key 'registry.example/log+1a2b3c4d+AQ...' -url http://127.0.0.1:8080/v1/log \
//	          -index 0,17,999 -from 500 -tiles -entries
//
// Without -url, name the pieces: -checkpoint, -tiles-from (a directory or URL holding tile/...),
// -inclusion and -entry (one pair per proof, comma-separated), -consistency with -old-checkpoint.
// It prints one line per check and exits 1 on the first failure.
//
// Build in GOPATH mode against Debian's golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./tools/tlogcheck ...
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// C2SP tlog-tiles fixes the tile height at 8.
const tileHeight = 8

// No single resource of a log is anywhere near this big; it bounds what a hostile server can make us read.
const maxResource = 16 << 20

var client = &http.Client{Timeout: 30 * time.Second}

// fetch reads a local file or an http(s) URL.
func fetch(loc string) ([]byte, error) {
	if !strings.HasPrefix(loc, "http://") && !strings.HasPrefix(loc, "https://") {
		data, err := os.ReadFile(loc)
		if err == nil && len(data) > maxResource {
			return nil, fmt.Errorf("%s: larger than %d bytes", loc, maxResource)
		}
		return data, err
	}
	resp, err := client.Get(loc)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResource+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", loc, resp.Status, strings.TrimSpace(string(data)))
	}
	if len(data) > maxResource {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", loc, maxResource)
	}
	return data, nil
}

// join appends a slash-separated resource name to a directory or URL.
func join(base, name string) string {
	if strings.HasPrefix(base, "http://") || strings.HasPrefix(base, "https://") {
		return strings.TrimRight(base, "/") + "/" + name
	}
	return filepath.Join(base, filepath.FromSlash(name))
}

// c2spPath turns a Go tlog tile of height 8 into its C2SP tlog-tiles path: Go writes the height
// ("tile/8/0/001") and calls entry bundles "data" tiles; C2SP has neither.
func c2spPath(t tlog.Tile) string {
	rest := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", tileHeight))
	if strings.HasPrefix(rest, "data/") {
		rest = "entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// tileReader serves Go's TileHashReader from C2SP tile paths under base. It keeps every tile it fetched
// so that authenticateTiles can check them again: a server must not answer one path two ways.
type tileReader struct {
	base    string
	fetched map[tlog.Tile][]byte
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := fetch(join(r.base, c2spPath(t)))
		if err != nil {
			return nil, err
		}
		if old, ok := r.fetched[t]; ok && string(old) != string(data) {
			return nil, fmt.Errorf("%s: served two different contents", c2spPath(t))
		}
		r.fetched[t] = data
		out[i] = data
	}
	return out, nil
}

// SaveTiles is called once TileHashReader has authenticated the tiles; nothing is cached here.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// openCheckpoint verifies a C2SP tlog-checkpoint note with Go's note.Open and parses its body strictly.
func openCheckpoint(msg []byte, v note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("note.Open: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return tlog.Tree{}, errors.New("checkpoint has fewer than 3 lines")
	}
	if lines[0] != v.Name() {
		return tlog.Tree{}, fmt.Errorf("checkpoint origin %q is not the key name %q", lines[0], v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return tlog.Tree{}, fmt.Errorf("malformed tree size %q", lines[1])
	}
	hash, err := tlog.ParseHash(lines[2])
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("malformed root hash %q", lines[2])
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return tlog.Tree{}, errors.New("empty extension line")
		}
	}
	return tlog.Tree{N: size, Hash: hash}, nil
}

// widthAt returns the width tile n at level l has in a tree of size size (0 if it has none).
func widthAt(size int64, l int, n int64) int {
	avail := size>>(uint(l)*tileHeight) - n<<tileHeight
	switch {
	case avail <= 0:
		return 0
	case avail > 1<<tileHeight:
		return 1 << tileHeight
	}
	return int(avail)
}

// subtreeHash folds a full tile's 256 hashes into the hash of the subtree they are the bottom row of.
func subtreeHash(data []byte) tlog.Hash {
	row := make([]tlog.Hash, len(data)/tlog.HashSize)
	for i := range row {
		copy(row[i][:], data[i*tlog.HashSize:])
	}
	for len(row) > 1 {
		next := make([]tlog.Hash, len(row)/2)
		for i := range next {
			next[i] = tlog.NodeHash(row[2*i], row[2*i+1])
		}
		row = next
	}
	return row[0]
}

// authenticateTiles checks every tile the reader fetched against the checkpoint, independently of
// TileHashReader: the tiles holding the tree's maximal subtrees were checked by tlog.TreeHash against the
// root; every other tile must be full and hash to its entry in an authenticated parent tile. (Debian's
// x/mod 0.7.0 TileHashReader skips this parent check for some tiles when the tree size has more one bits
// than there are distinct root tiles, so we do not rely on it.)
func authenticateTiles(tree tlog.Tree, fetched map[tlog.Tile][]byte) (int, error) {
	trusted := map[tlog.Tile]bool{}
	for lo := int64(0); lo < tree.N; {
		level := 0
		for int64(1)<<(level+1) <= tree.N-lo {
			level++
		}
		n := lo >> level
		l := level / tileHeight
		tn := (n << (level % tileHeight)) >> tileHeight
		trusted[tlog.Tile{H: tileHeight, L: l, N: tn, W: widthAt(tree.N, l, tn)}] = true
		lo += int64(1) << level
	}
	var check func(t tlog.Tile) error
	check = func(t tlog.Tile) error {
		data, ok := fetched[t]
		if !ok {
			return fmt.Errorf("%s: needed to authenticate a child tile but never fetched", c2spPath(t))
		}
		if len(data) != t.W*tlog.HashSize {
			return fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		if trusted[t] {
			return nil
		}
		if t.W != 1<<tileHeight {
			return fmt.Errorf("%s: a partial tile that is not the tree's own", c2spPath(t))
		}
		parent := tlog.Tile{H: tileHeight, L: t.L + 1, N: t.N >> tileHeight}
		parent.W = widthAt(tree.N, parent.L, parent.N)
		if err := check(parent); err != nil {
			return err
		}
		i := int(t.N - parent.N<<tileHeight)
		var want tlog.Hash
		copy(want[:], fetched[parent][i*tlog.HashSize:])
		if subtreeHash(data) != want {
			return fmt.Errorf("%s: does not hash to its entry in %s", c2spPath(t), c2spPath(parent))
		}
		trusted[t] = true
		return nil
	}
	for t := range fetched {
		if err := check(t); err != nil {
			return 0, err
		}
	}
	return len(fetched), nil
}

type inclusionProof struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	Hashes   []string `json:"hashes"`
}

type consistencyProof struct {
	From   int64    `json:"from"`
	To     int64    `json:"to"`
	Hashes []string `json:"hashes"`
}

type entry struct {
	Index int64  `json:"index"`
	Leaf  string `json:"leaf"`
}

func parseHashes(in []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof hash %d: %v", i, err)
		}
		out[i] = h
	}
	return out, nil
}

func readJSON(loc string, v interface{}) error {
	data, err := fetch(loc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %v", loc, err)
	}
	return nil
}

// decodeBundle splits a C2SP entry bundle: entries prefixed with a big-endian uint16 length.
func decodeBundle(data []byte) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("entry bundle truncated in a length")
		}
		n := int(data[0])<<8 | int(data[1])
		if len(data) < 2+n {
			return nil, errors.New("entry bundle truncated in an entry")
		}
		entries = append(entries, data[2:2+n])
		data = data[2+n:]
	}
	return entries, nil
}

type checker struct {
	tree  tlog.Tree       // the verified checkpoint
	tiles tlog.HashReader // authenticated against tree; nil without tiles
	old   *tlog.Tree      // the verified old checkpoint, if any
}

// rootAt returns a trusted root for tree size n: the checkpoint's, the old checkpoint's, or one rebuilt
// from tiles that TileHashReader authenticated against the checkpoint.
func (c *checker) rootAt(n int64) (tlog.Hash, error) {
	switch {
	case n == c.tree.N:
		return c.tree.Hash, nil
	case c.old != nil && n == c.old.N:
		return c.old.Hash, nil
	case c.tiles != nil && n <= c.tree.N:
		return tlog.TreeHash(n, c.tiles)
	}
	return tlog.Hash{}, fmt.Errorf("no trusted root for tree size %d (give -tiles or a checkpoint of that size)", n)
}

func (c *checker) inclusion(proofLoc, entryLoc string) error {
	var p inclusionProof
	if err := readJSON(proofLoc, &p); err != nil {
		return err
	}
	var e entry
	if err := readJSON(entryLoc, &e); err != nil {
		return err
	}
	if e.Index != p.Index {
		return fmt.Errorf("entry is #%d but the proof is for #%d", e.Index, p.Index)
	}
	leaf, err := base64.StdEncoding.DecodeString(e.Leaf)
	if err != nil {
		return fmt.Errorf("entry #%d: leaf is not base64", e.Index)
	}
	hashes, err := parseHashes(p.Hashes)
	if err != nil {
		return err
	}
	root, err := c.rootAt(p.TreeSize)
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(tlog.RecordProof(hashes), p.TreeSize, root, p.Index, tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("tlog.CheckRecord(#%d in %d): %v", p.Index, p.TreeSize, err)
	}
	same := ""
	if c.tiles != nil {
		mine, err := tlog.ProveRecord(p.TreeSize, p.Index, c.tiles)
		if err != nil {
			return fmt.Errorf("tlog.ProveRecord from tiles: %v", err)
		}
		if !equalHashes(mine, hashes) {
			return fmt.Errorf("proof of #%d in %d differs from tlog.ProveRecord over the tiles", p.Index, p.TreeSize)
		}
		same = ", identical to tlog.ProveRecord over the tiles"
	}
	fmt.Printf("ok   inclusion of entry %d in tree %d (%d hashes, tlog.CheckRecord%s)\n", p.Index, p.TreeSize, len(hashes), same)
	return nil
}

func (c *checker) consistency(proofLoc string) error {
	var p consistencyProof
	if err := readJSON(proofLoc, &p); err != nil {
		return err
	}
	hashes, err := parseHashes(p.Hashes)
	if err != nil {
		return err
	}
	newRoot, err := c.rootAt(p.To)
	if err != nil {
		return err
	}
	oldRoot, err := c.rootAt(p.From)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(tlog.TreeProof(hashes), p.To, newRoot, p.From, oldRoot); err != nil {
		return fmt.Errorf("tlog.CheckTree(%d -> %d): %v", p.From, p.To, err)
	}
	same := ""
	if c.tiles != nil {
		mine, err := tlog.ProveTree(p.To, p.From, c.tiles)
		if err != nil {
			return fmt.Errorf("tlog.ProveTree from tiles: %v", err)
		}
		if !equalHashes(mine, hashes) {
			return fmt.Errorf("proof %d -> %d differs from tlog.ProveTree over the tiles", p.From, p.To)
		}
		same = ", identical to tlog.ProveTree over the tiles"
	}
	fmt.Printf("ok   consistency of tree %d with tree %d (%d hashes, tlog.CheckTree%s)\n", p.From, p.To, len(hashes), same)
	return nil
}

// bundles checks every entry bundle of the tree against the authenticated level-0 tiles.
func (c *checker) bundles(base string, only map[int64]bool) error {
	checked := 0
	for n := int64(0); n<<tileHeight < c.tree.N; n++ {
		if only != nil && !only[n] {
			continue
		}
		w := c.tree.N - n<<tileHeight
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		t := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)}
		data, err := fetch(join(base, c2spPath(t)))
		if err != nil {
			return err
		}
		entries, err := decodeBundle(data)
		if err != nil {
			return fmt.Errorf("%s: %v", c2spPath(t), err)
		}
		if int64(len(entries)) != w {
			return fmt.Errorf("%s: %d entries, want %d", c2spPath(t), len(entries), w)
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, n<<tileHeight+int64(i))
		}
		hashes, err := c.tiles.ReadHashes(indexes)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != hashes[i] {
				return fmt.Errorf("%s: entry %d does not hash to its level-0 tile hash", c2spPath(t), n<<tileHeight+int64(i))
			}
		}
		checked++
	}
	fmt.Printf("ok   %d entry bundle(s) match the authenticated level-0 tiles\n", checked)
	return nil
}

func equalHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func main() {
	key := flag.String("key", "", "verifier key string <name>+<hex id>+<base64 key>, or @file holding it (required)")
	base := flag.String("url", "", "base URL of the log API (serves checkpoint, tile/..., entries/I, proof/...)")
	cpLoc := flag.String("checkpoint", "", "signed checkpoint file or URL (default <url>/checkpoint)")
	oldLoc := flag.String("old-checkpoint", "", "an earlier signed checkpoint, file or URL")
	tilesFrom := flag.String("tiles-from", "", "directory or URL holding tile/... (default -url)")
	useTiles := flag.Bool("tiles", false, "authenticate tiles against the checkpoint with tlog.TileHashReader")
	allEntries := flag.Bool("entries", false, "check entry bundles against the tiles (all of them, or those of -index)")
	indexList := flag.String("index", "", "with -url: entries to prove, comma-separated")
	from := flag.Int64("from", -1, "with -url: check consistency from this tree size to the checkpoint")
	inclusionList := flag.String("inclusion", "", "inclusion proof JSON files or URLs, comma-separated")
	entryList := flag.String("entry", "", "entry JSON files or URLs, one per -inclusion")
	consistencyList := flag.String("consistency", "", "consistency proof JSON files or URLs, comma-separated")
	flag.Parse()

	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "FAIL %v\n", err)
		os.Exit(1)
	}
	if *key == "" {
		flag.Usage()
		os.Exit(2)
	}
	vkey := *key
	if strings.HasPrefix(vkey, "@") {
		data, err := os.ReadFile(vkey[1:])
		if err != nil {
			fail(err)
		}
		vkey = strings.TrimSpace(string(data))
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail(fmt.Errorf("note.NewVerifier: %v", err))
	}
	if *cpLoc == "" && *base != "" {
		*cpLoc = join(*base, "checkpoint")
	}
	if *tilesFrom == "" {
		*tilesFrom = *base
	}
	if *cpLoc == "" {
		fail(errors.New("need -checkpoint or -url"))
	}

	msg, err := fetch(*cpLoc)
	if err != nil {
		fail(err)
	}
	tree, err := openCheckpoint(msg, verifier)
	if err != nil {
		fail(fmt.Errorf("checkpoint: %v", err))
	}
	fmt.Printf("ok   checkpoint %s: size %d, root %v (note.Open, key id %08x)\n", verifier.Name(), tree.N, tree.Hash, verifier.KeyHash())
	c := &checker{tree: tree}

	if *oldLoc != "" {
		msg, err := fetch(*oldLoc)
		if err != nil {
			fail(err)
		}
		old, err := openCheckpoint(msg, verifier)
		if err != nil {
			fail(fmt.Errorf("old checkpoint: %v", err))
		}
		if old.N > tree.N {
			fail(fmt.Errorf("old checkpoint size %d is beyond the checkpoint's %d", old.N, tree.N))
		}
		c.old = &old
		fmt.Printf("ok   old checkpoint: size %d, root %v\n", old.N, old.Hash)
	}

	var tr *tileReader
	if *useTiles || *allEntries {
		if *tilesFrom == "" {
			fail(errors.New("-tiles needs -tiles-from or -url"))
		}
		tr = &tileReader{base: *tilesFrom, fetched: map[tlog.Tile][]byte{}}
		c.tiles = tlog.TileHashReader(tree, tr)
		h, err := tlog.TreeHash(tree.N, c.tiles)
		if err != nil {
			fail(fmt.Errorf("tiles: %v", err))
		}
		if h != tree.Hash {
			fail(errors.New("tiles: tree hash differs from the checkpoint"))
		}
		fmt.Printf("ok   tiles rebuild the checkpoint root (tlog.TileHashReader)\n")
		if c.old != nil {
			if h, err := tlog.TreeHash(c.old.N, c.tiles); err != nil || h != c.old.Hash {
				fail(fmt.Errorf("old checkpoint root is not the root of the first %d entries in the tiles (%v)", c.old.N, err))
			}
			fmt.Printf("ok   old checkpoint root matches the tiles of the new tree\n")
		}
	}

	inclusions, entries := splitList(*inclusionList), splitList(*entryList)
	consistencies := splitList(*consistencyList)
	var onlyBundles map[int64]bool
	for _, s := range splitList(*indexList) {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || *base == "" {
			fail(fmt.Errorf("-index needs -url and integers, got %q", s))
		}
		inclusions = append(inclusions, join(*base, fmt.Sprintf("proof/inclusion?index=%d&tree_size=%d", i, tree.N)))
		entries = append(entries, join(*base, fmt.Sprintf("entries/%d", i)))
		if onlyBundles == nil {
			onlyBundles = map[int64]bool{}
		}
		onlyBundles[i>>tileHeight] = true
	}
	if *from >= 0 {
		if *base == "" {
			fail(errors.New("-from needs -url"))
		}
		consistencies = append(consistencies, join(*base, fmt.Sprintf("proof/consistency?from=%d&to=%d", *from, tree.N)))
	}
	if len(inclusions) != len(entries) {
		fail(fmt.Errorf("%d inclusion proofs but %d entries", len(inclusions), len(entries)))
	}
	for i := range inclusions {
		if err := c.inclusion(inclusions[i], entries[i]); err != nil {
			fail(err)
		}
	}
	for _, loc := range consistencies {
		if err := c.consistency(loc); err != nil {
			fail(err)
		}
	}
	if *allEntries {
		if err := c.bundles(*tilesFrom, onlyBundles); err != nil {
			fail(err)
		}
	}
	if tr != nil {
		n, err := authenticateTiles(tree, tr.fetched)
		if err != nil {
			fail(fmt.Errorf("tiles: %v", err))
		}
		fmt.Printf("ok   all %d tiles read hash up to the checkpoint root (own check, beside TileHashReader's)\n", n)
	}
	fmt.Println("all checks passed")
}
