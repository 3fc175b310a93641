package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestFLVFileDuration reads a duration from a file's two ends, and 0 from
// files that do not say.
func TestFLVFileDuration(t *testing.T) {
	var b []byte
	b = appendFLVHeader(b, true, true)
	b = appendFLVTag(b, tagVideo, 1000, []byte{0x17, 1, 0, 0, 0})
	b = appendFLVTag(b, tagAudio, 4500, []byte{0xAF, 1})
	withMeta := appendFLVTag(appendFLVHeader(nil, true, true), tagScript, 0, amf0AppendAll(nil, "onMetaData", amfECMAArray{{"duration", 0.0}}))
	withMeta = append(withMeta, b[flvHeaderLen+4:]...)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want time.Duration
	}{
		{"whole", b, 3500 * time.Millisecond},
		{"metadata at 0 first", withMeta, 3500 * time.Millisecond},
		{"cut", b[:len(b)-3], 0},
		{"empty", nil, 0},
		{"not flv", []byte("hello world, this is not an FLV file at all"), 0},
	} {
		path := filepath.Join(dir, c.name+".flv")
		os.WriteFile(path, c.data, 0o644)
		if got := flvFileDuration(path); got != c.want {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
	}
}

// fullDisk takes room bytes, then fails as a full disk does.
type fullDisk struct {
	data []byte
	room int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	n := min(len(p), d.room-len(d.data))
	d.data = append(d.data, p[:n]...)
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

func (d *fullDisk) Truncate(size int64) error {
	d.data = d.data[:size]
	return nil
}

// TestRecordWriteCutShort: a write that fails part-way (a full disk)
// leaves the file at its last whole tag, with its size and duration
// accounted for those tags only; metadata is written stamped 0.
func TestRecordWriteCutShort(t *testing.T) {
	var tags [][]byte
	tags = append(tags, appendFLVHeader(nil, true, true))
	tags = append(tags, appendFLVTag(nil, tagScript, 1000, amf0AppendAll(nil, "onMetaData", amfECMAArray{{"duration", 0.0}})))
	for i := range 5 {
		tags = append(tags, appendFLVTag(nil, tagVideo, uint32(1000+40*i), []byte{0x17, 1, 0, 0, 0, byte(i), 2, 3}))
	}
	wholeThree := 0 // header, metadata, three frames
	for _, tag := range tags[:5] {
		wholeThree += len(tag)
	}
	disk := &fullDisk{room: wholeThree + 7}
	rec := &recording{}
	rec.first.Store(-1)
	rec.last.Store(-1)
	b := net.Buffers(slices.Clone(tags))
	err := rec.writeTags(disk, &b, slices.Clone(tags))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v; want ENOSPC", err)
	}
	if len(disk.data) != wholeThree || rec.bytes.Load() != int64(wholeThree) {
		t.Errorf("file %d bytes, %d accounted; want the %d bytes of whole tags", len(disk.data), rec.bytes.Load(), wholeThree)
	}
	if got := rec.duration(); got != 80*time.Millisecond {
		t.Errorf("duration %v; want 80ms (three frames written)", got)
	}
	if meta := disk.data[len(tags[0]):]; tagTime(meta) != 0 {
		t.Errorf("metadata written at %d; want 0", tagTime(meta))
	}
	if tagTime(tags[1]) != 1000 {
		t.Errorf("the hub's shared metadata bytes were changed")
	}
}
