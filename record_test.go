package main

import (
	"os"
	"path/filepath"
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
