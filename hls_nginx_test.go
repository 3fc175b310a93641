package main

// HLS through a caching reverse proxy: nginx with proxy_cache_lock in
// front of gms, as the README's "Scaling out" sets it up. Segments and
// parts are immutable and blocking reloads name the part they wait for,
// so any number of LL-HLS viewers behind the proxy cost gms about one
// request per part and per playlist version.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// nginxConf is the README's caching proxy, with its paths in dir.
const nginxConf = `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    proxy_cache_path %[1]s/cache levels=1:2 keys_zone=hls:10m max_size=1g inactive=1m use_temp_path=off;
    server {
        listen %[2]s;
        location / {
            proxy_pass http://%[3]s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;  # gms then knows a request is not local
            proxy_cache hls;
            proxy_cache_lock on;            # one request to gms per URL; the others wait for it
            proxy_cache_lock_timeout 10s;   # a blocking reload may take three target durations
            proxy_cache_lock_age 10s;
            add_header X-Cache $upstream_cache_status;
        }
    }
}
`

func needNginx(t *testing.T) string {
	t.Helper()
	skipShort(t)
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	missingOnCI(t, "nginx not found (apt-get install nginx-light)")
	return ""
}

// TestHLSBehindNginx: 20 LL-HLS viewers (blocking reloads for the next
// part, then the part, as hls.js does) through nginx for 6 s of a live
// stream published in real time: each viewer gets every part, and gms
// sees about one request per part and per blocking reload URL, whatever
// the number of viewers.
func TestHLSBehindNginx(t *testing.T) {
	nginx := needNginx(t)
	ts := startServer(t, nil)
	key := streamKey{"live", "cached"}
	fd := startHLSFeed(t, ts, key)
	fd.feedUpTo(100)

	proxyAddr, nginxLog := startNginx(t, nginx, ts.httpAddr)

	// The publisher, in real time.
	defer fd.feedInRealTime(100)()

	base := "http://" + proxyAddr + "/live/cached/"
	status, _, body := hlsGet(t, base+"index.m3u8")
	if status != 200 {
		t.Fatalf("playlist through nginx: %d %s\n%s", status, body, nginxLog())
	}
	const viewers = 20
	watchUntil := time.Now().Add(6 * time.Second)
	var clientRequests atomic.Int64
	partsSeen := make([]map[string]bool, viewers)
	var wg sync.WaitGroup
	get := func(url string) (int, []byte, error) {
		status, _, b := hlsGet(t, url)
		clientRequests.Add(1)
		return status, b, nil
	}
	for v := range viewers {
		partsSeen[v] = map[string]bool{}
		wg.Go(func() {
			err := watchLLHLS(t, get, base, parseM3U8(t, body),
				func() bool { return !time.Now().Before(watchUntil) || t.Failed() },
				func(uri string, _ []byte) { partsSeen[v][uri] = true })
			if err != nil {
				t.Errorf("viewer %d: %v", v, err)
			}
		})
	}
	wg.Wait()
	// What reached gms: its access log lines for this stream.
	var origin, originParts int
	for _, line := range strings.Split(ts.logs.String(), "\n") {
		if strings.Contains(line, `msg="http request"`) && strings.Contains(line, "path=/live/cached/") {
			origin++
			if strings.Contains(line, "path=/live/cached/part-") {
				originParts++
			}
		}
	}
	parts := len(partsSeen[0])
	for v := range viewers {
		if len(partsSeen[v]) < parts*8/10 {
			t.Errorf("viewer %d got %d parts; viewer 0 got %d", v, len(partsSeen[v]), parts)
		}
	}
	t.Logf("%d viewers made %d requests to nginx for %d parts; gms got %d requests, %d for parts",
		viewers, clientRequests.Load(), parts, origin, originParts)
	if parts < 20 || originParts > parts*3/2 || origin > int(clientRequests.Load())/5 {
		t.Errorf("gms got %d requests (%d for %d parts) for the viewers' %d; want about one a part and a playlist version",
			origin, originParts, parts, clientRequests.Load())
	}
}

// watchLLHLS is an LL-HLS viewer as hls.js plays in low-latency mode, from
// the playlist pl of base ("http://HOST/APP/NAME/"): a blocking reload for
// the part after the last one listed (RFC 8216bis §6.2.5.2, _HLS_msn and
// _HLS_part, with _HLS_skip=YES for a delta update), then each part listed
// after the last one it had, in order, until stop says so. get fetches a
// URL (status, body); part is called with each part's URI and bytes.
// TestHLSBehindNginx and the load tool's llhls viewers share it.
func watchLLHLS(t *testing.T, get func(url string) (int, []byte, error), base string, pl *m3u8,
	stop func() bool, part func(uri string, data []byte)) error {
	lastMSN, lastPart := -1, -1
	for !stop() {
		// The part after the last one listed, which is what the preload
		// hint names when there is one; hls.js counts it the same way
		// (a playlist rendered between a segment's end and the next
		// one's start has no hint).
		msn, hint := pl.mediaSequence+pl.skipped+len(pl.segments), len(pl.openParts)
		if pl.preloadHint != "" {
			msn, hint = msnOf(t, pl.preloadHint)
		}
		url := fmt.Sprintf("%sindex.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, hint)
		if pl.canSkipUntil > 0 { // hls.js asks for delta updates where the server offers them (§6.2.5.1)
			url += "&_HLS_skip=YES"
		}
		status, b, err := get(url)
		if err != nil {
			return err
		}
		if status != 200 {
			return fmt.Errorf("blocking reload %s: %d %s", url, status, b)
		}
		pl = parseM3U8(t, b)
		if lastMSN < 0 { // the first reload: start at the part asked for
			lastMSN, lastPart = msn, hint-1
		}
		for _, p := range append(allParts(pl), pl.openParts...) {
			m, i := msnOf(t, p.uri)
			if m < lastMSN || m == lastMSN && i <= lastPart {
				continue
			}
			status, data, err := get(base + p.uri)
			if err != nil {
				return err
			}
			if status != 200 || len(data) == 0 {
				return fmt.Errorf("%s: %d", p.uri, status)
			}
			part(p.uri, data)
			lastMSN, lastPart = m, i
		}
	}
	return nil
}

// startNginx runs nginx with nginxConf in front of upstream until the
// test ends; it returns nginx's address and a reader of its error log.
func startNginx(t *testing.T, nginx, upstream string) (proxyAddr string, nginxLog func() string) {
	t.Helper()
	// nginx's worker runs as nobody when started as root: its directory
	// must be open to it (t.TempDir's parent is not).
	dir, err := os.MkdirTemp("", "gms-nginx")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777)
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr = ln.Addr().String()
	ln.Close()
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, proxyAddr, upstream)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-c", conf)
	// SIGTERM: the master takes its worker down with it (a killed master
	// leaves the worker running). nginx logs to error.log, so no pipe of
	// ours outlives it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	nginxLog = func() string { b, _ := os.ReadFile(filepath.Join(dir, "error.log")); return string(b) }
	waitFor(t, "nginx to listen", func() bool {
		c, err := net.Dial("tcp", proxyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	return proxyAddr, nginxLog
}

// TestNginxIsNotThisMachine: behind README's nginx, on the same machine,
// a request from afar is not "this machine": it cannot kick without
// -api-user (nginx says it forwarded it, in X-Forwarded-For).
func TestNginxIsNotThisMachine(t *testing.T) {
	nginx := needNginx(t)
	ts := startServer(t, nil)
	proxyAddr, _ := startNginx(t, nginx, ts.httpAddr)
	kick := func(addr string) int {
		req, _ := http.NewRequest("DELETE", "http://"+addr+"/api/clients/ABCDEFGH", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := kick(ts.httpAddr); code != 404 {
		t.Errorf("kick from this machine: %d; want 404 (nothing to kick)", code)
	}
	if code := kick(proxyAddr); code != 403 {
		t.Errorf("kick through nginx: %d; want 403", code)
	}
}
