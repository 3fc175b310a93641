package main

// Recording: with -record DIR every published stream is written to
// DIR/APP/NAME/<start time>.flv, from its first keyframe to its
// unpublish. A recording is a tap on the stream (see hub.tap): the hub
// feeds it like a player, into a bounded queue of its own, so a slow or
// full disk costs the recording its frames, never the publisher or the
// viewers their time. The file is appended tag by tag, so one cut short
// by a crash or a kill is readable up to its last whole tag.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// recordTimeLayout names a recording by its start, local time, as NMS v2
// names its MP4 recordings.
const recordTimeLayout = "2006-01-02-15-04-05"

// recorder starts a recording at each publish and lists them.
type recorder struct {
	dir    string
	log    *slog.Logger
	wg     sync.WaitGroup
	errors atomic.Uint64 // recordings cut short by a file error

	mu     sync.Mutex
	active map[string]*recording // by path relative to dir
}

func newRecorder(dir string, log *slog.Logger) *recorder {
	return &recorder{dir: dir, log: log, active: map[string]*recording{}}
}

// recording is one file being written.
type recording struct {
	rel     string // path relative to the recorder's dir, with slashes
	started time.Time
	bytes   atomic.Int64
	first   atomic.Int64 // first and last tag timestamps, ms; -1: none yet
	last    atomic.Int64
}

// recordForm is a recording's part in the hub: FLV tags; the recording
// ends with the publish.
type recordForm struct{}

func (recordForm) format() outputFormat             { return formatFLV }
func (recordForm) publishNotice(streamKey) *frame   { return nil }
func (recordForm) unpublishNotice(streamKey) *frame { return nil }

// tap is called on the hub goroutine at each publish. It returns the
// recording's subscriber and starts its writer, which opens the file
// (the hub goroutine never waits for a disk).
func (r *recorder) tap(h *hub, key streamKey) []*subscriber {
	sub := h.newSubscriber(key, clientInfo{ID: "record", Protocol: protoRTMP}, recordForm{}, nil)
	sub.patient = true
	rec := &recording{started: time.Now()}
	rec.first.Store(-1)
	rec.last.Store(-1)
	r.wg.Go(func() { r.write(sub, key, rec) })
	return []*subscriber{sub}
}

// write runs one recording until its publish ends or the file fails.
func (r *recorder) write(sub *subscriber, key streamKey, rec *recording) {
	f, err := r.create(key, rec)
	if err != nil {
		r.errors.Add(1)
		r.log.Error("record: cannot create file", "stream", key.String(), "err", err)
		sub.hub.untap(sub) // what was queued goes with sub
		return
	}
	log := r.log.With("stream", key.String(), "file", rec.rel)
	log.Info("record: started")
	r.mu.Lock()
	r.active[rec.rel] = rec
	r.mu.Unlock()
	var tags [][]byte
	err = sub.pumpBlocking(func(b *net.Buffers) error {
		tags = append(tags[:0], *b...)
		return rec.writeTags(f, b, tags)
	})
	r.mu.Lock()
	delete(r.active, rec.rel)
	r.mu.Unlock()
	closeErr := f.Close()
	if !errors.Is(err, errSubscriptionEnded) {
		r.errors.Add(1)
		sub.hub.untap(sub)
		log.Error("record: stopped by an error; the stream goes on", "err", err, "bytes", rec.bytes.Load())
		return
	}
	if closeErr != nil {
		r.errors.Add(1)
		log.Error("record: closing the file", "err", closeErr)
		return
	}
	if rec.bytes.Load() == 0 {
		// The publisher left before its first keyframe (or sent nothing):
		// an empty file is no recording, and players cannot open it.
		if err := os.Remove(f.Name()); err != nil {
			log.Warn("record: removing an empty recording", "err", err)
		}
		log.Info("record: nothing recorded; no file kept")
		return
	}
	log.Info("record: finished", "bytes", rec.bytes.Load(), "duration", rec.duration())
}

// recordFile is what a recording writes to: an *os.File.
type recordFile interface {
	io.Writer
	Truncate(size int64) error
}

// writeTags appends a batch of whole FLV tags (b; tags is a copy of its
// slices, as writing consumes b) and accounts for them. A write that
// fails part-way (a full disk) is cut back to the last whole tag, so that
// the file ends cleanly and its duration can be read from its end.
func (rec *recording) writeTags(f recordFile, b *net.Buffers, tags [][]byte) error {
	for i, tag := range tags {
		if len(tag) >= flvTagHeaderLen && tag[0] == tagScript {
			tags[i] = scriptAtZero(tag)
			(*b)[i] = tags[i]
		}
	}
	start := rec.bytes.Load()
	n, err := b.WriteTo(f)
	var whole int64
	for _, tag := range tags {
		if whole+int64(len(tag)) > n {
			break
		}
		whole += int64(len(tag))
		if len(tag) >= flvTagHeaderLen && (tag[0] == tagAudio || tag[0] == tagVideo) {
			ts := int64(tagTime(tag))
			rec.first.CompareAndSwap(-1, ts)
			rec.last.Store(ts)
		}
	}
	rec.bytes.Add(whole)
	if err != nil && whole < n {
		if terr := f.Truncate(start + whole); terr != nil {
			return fmt.Errorf("%w (and cutting the file back to its last whole tag: %v)", err, terr)
		}
	}
	return err
}

// create makes DIR/APP/NAME/<start>.flv, with a suffix when a file of
// that name exists (two publishes in one second).
func (r *recorder) create(key streamKey, rec *recording) (*os.File, error) {
	dir := filepath.Join(r.dir, key.App, key.Name) // both are validName: no separators, no dots
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := rec.started.Format(recordTimeLayout)
	for i := 0; ; i++ {
		name := base + ".flv"
		if i > 0 {
			name = base + "-" + strconv.Itoa(i) + ".flv"
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return nil, err
		}
		rec.rel = key.App + "/" + key.Name + "/" + name
		return f, nil
	}
}

func (rec *recording) duration() time.Duration {
	first, last := rec.first.Load(), rec.last.Load()
	if first < 0 || last < first {
		return 0
	}
	return time.Duration(last-first) * time.Millisecond
}

// wait returns when every recording's file is closed.
func (r *recorder) wait() { r.wg.Wait() }

// recordingInfo is one recording in the API.
type recordingInfo struct {
	App       string    `json:"app"`
	Stream    string    `json:"stream"`
	File      string    `json:"file"` // relative to the recording directory
	Size      int64     `json:"size"`
	Duration  float64   `json:"duration"` // seconds
	Modified  time.Time `json:"modified"`
	Recording bool      `json:"recording"` // still being written
}

// list reads the recordings on disk, newest first, at most limit.
// Durations of finished files come from their first and last tags.
func (r *recorder) list(limit int) ([]recordingInfo, error) {
	var out []recordingInfo
	err := filepath.WalkDir(r.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == r.dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return nil // an unreadable entry is left out, not an error
		}
		if d.IsDir() || !strings.HasSuffix(path, ".flv") {
			return nil
		}
		rel, err := filepath.Rel(r.dir, path)
		if err != nil {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) != 3 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		ri := recordingInfo{App: parts[0], Stream: parts[1], File: filepath.ToSlash(rel), Size: info.Size(), Modified: info.ModTime()}
		r.mu.Lock()
		rec := r.active[ri.File]
		r.mu.Unlock()
		if rec != nil {
			ri.Recording, ri.Size = true, rec.bytes.Load()
			ri.Duration = rec.duration().Seconds()
		} else {
			ri.Duration = flvFileDuration(path).Seconds()
		}
		out = append(out, ri)
		return nil
	})
	slices.SortFunc(out, func(a, b recordingInfo) int { return b.Modified.Compare(a.Modified) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// flvFileDuration is the time from an FLV file's first tag to its last
// whole one, read from the file's two ends (the last PreviousTagSize
// points at the last tag's header); 0 when the file does not say.
func flvFileDuration(path string) time.Duration {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var head [flvHeaderLen]byte
	if _, err := f.ReadAt(head[:], 0); err != nil || string(head[:3]) != "FLV" {
		return 0
	}
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	// The first audio or video tag: metadata before it is stamped 0.
	var first uint32
	var tag [flvTagHeaderLen]byte
	for off, i := int64(flvHeaderLen+4), 0; ; i++ {
		if i == 16 {
			return 0 // no frame among the first tags: not a recording of ours
		}
		if _, err := f.ReadAt(tag[:], off); err != nil {
			return 0
		}
		if t := tag[0] & 0x1F; t == tagAudio || t == tagVideo {
			first = tagTime(tag[:])
			break
		}
		off += flvTagHeaderLen + int64(be24(tag[1:4])) + 4
	}
	var prev [4]byte
	if _, err := f.ReadAt(prev[:], st.Size()-4); err != nil {
		return 0
	}
	n := int64(binary.BigEndian.Uint32(prev[:]))
	if n < flvTagHeaderLen || n > st.Size() {
		return 0
	}
	if _, err := f.ReadAt(tag[:], st.Size()-4-n); err != nil {
		return 0
	}
	if last := tagTime(tag[:]); last > first {
		return time.Duration(last-first) * time.Millisecond
	}
	return 0
}

// scriptAtZero is a script data tag (metadata) stamped 0, copied when it
// is not: the hub stamps a joiner's metadata with its first frame's time,
// and ffmpeg's FLV reader takes onMetaData for the file's metadata only at
// 0 (at any other time it makes a "text" data stream of it). The hub's
// bytes are shared with the players, so they are never changed in place.
func scriptAtZero(tag []byte) []byte {
	if tagTime(tag) == 0 {
		return tag
	}
	c := bytes.Clone(tag)
	c[4], c[5], c[6], c[7] = 0, 0, 0, 0
	return c
}

// tagTime is an FLV tag header's timestamp with its extension byte.
func tagTime(h []byte) uint32 { return be24(h[4:7]) | uint32(h[7])<<24 }
