package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWriteImmutableFastPath: a plain GET of a segment or part is answered
// without ServeContent, with the same status, headers and bytes as
// ServeContent gives a GET it has to look at (one with a precondition
// that does not match), and requests with ranges or preconditions still
// get ServeContent's answers.
func TestWriteImmutableFastPath(t *testing.T) {
	data := [][]byte{[]byte("moof-bytes"), []byte("mdat-bytes and more")}
	whole := bytes.Join(data, nil)
	serve := func(method string, headers ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/live/x/part-a-1-0.m4s", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		writeImmutable(w, r, "video/mp4", "tag", data)
		return w
	}
	plain, looked := serve("GET"), serve("GET", "If-None-Match", `"other"`)
	if plain.Code != 200 || !bytes.Equal(plain.Body.Bytes(), whole) {
		t.Fatalf("plain GET: %d %q; want 200 %q", plain.Code, plain.Body.Bytes(), whole)
	}
	if looked.Code != 200 || !bytes.Equal(looked.Body.Bytes(), whole) {
		t.Fatalf("GET through ServeContent: %d %q", looked.Code, looked.Body.Bytes())
	}
	for _, h := range []string{"Content-Type", "Content-Length", "Accept-Ranges", "ETag", "Cache-Control", "Last-Modified"} {
		if a, b := plain.Header().Get(h), looked.Header().Get(h); a != b {
			t.Errorf("%s: %q on the plain GET, %q through ServeContent", h, a, b)
		}
	}
	if w := serve("GET", "Range", "bytes=4-9"); w.Code != http.StatusPartialContent || w.Body.String() != "-bytes" {
		t.Errorf("Range: %d %q; want 206 %q", w.Code, w.Body.String(), "-bytes")
	}
	if w := serve("GET", "If-None-Match", `"tag"`); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match of its ETag: %d, %d bytes; want 304 and none", w.Code, w.Body.Len())
	}
	if w := serve("HEAD"); w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "29" {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %q; want 200, none, 29", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	if !strings.Contains(plain.Header().Get("Cache-Control"), "immutable") {
		t.Errorf("Cache-Control %q", plain.Header().Get("Cache-Control"))
	}
}
