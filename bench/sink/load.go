package main

// Load-client mode: measures how many docs/s the sink absorbs, so benchmark
// figures for the agent can be trusted not to be capped by the sink. The
// client patches seq/wt digits into a prebuilt body instead of rebuilding
// it, so nearly all of its CPU goes to the socket.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	loadSeqBase = 1_000_000_000 // 10-digit seqs: fixed width, so digits can be patched in place
	docTemplate = `{"@timestamp":"2024-01-15T08:00:00.000Z","level":"info","message":"HTTP request","method":"GET",` +
		`"url":"/api/payouts/payout_1a2b3c4d","statusCode":200,"responseTime":34,"ip":"10.1.2.3",` +
		`"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.2 Safari/605.1.15",` +
		`"userId":"user_4821","requestId":"req_5e1f9a2b","seq":SSSSSSSSSS,"wt":WWWWWWWWWWWWWWWWWWW,` +
		`"service":"click-clack-cashflow","version":"1.0.0","timestamp":"2024-01-15 08:00:00",` +
		`"host":{"name":"bench-host"},"agent":{"type":"ccf-agent","version":"0.1.0"},` +
		`"log":{"file":{"path":"/var/log/click-clack-cashflow/combined.log"},"offset":123456}}`
	actionTemplate = `{"create":{"_index":"ccf-logs","_id":"app-IIIIIIIIII"}}`
)

type batchTemplate struct {
	body            []byte
	seqAt, idAt, wt []int
}

func newBatchTemplate(n int) *batchTemplate {
	t := &batchTemplate{}
	for i := 0; i < n; i++ {
		t.idAt = append(t.idAt, len(t.body)+bytes.IndexByte([]byte(actionTemplate), 'I'))
		t.body = append(t.body, actionTemplate...)
		t.body = append(t.body, '\n')
		t.seqAt = append(t.seqAt, len(t.body)+bytes.Index([]byte(docTemplate), []byte("SSSS")))
		t.wt = append(t.wt, len(t.body)+bytes.Index([]byte(docTemplate), []byte("WWWW")))
		t.body = append(t.body, docTemplate...)
		t.body = append(t.body, '\n')
	}
	return t
}

func putDigits(b []byte, at, width int, v int64) {
	for i := at + width - 1; i >= at; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// fill stamps seqs first..first+len-1 and the current time into the template.
func (t *batchTemplate) fill(first int64, n int) []byte {
	wt := time.Now().UnixNano()
	for j := 0; j < n; j++ {
		putDigits(t.body, t.seqAt[j], 10, first+int64(j))
		putDigits(t.body, t.idAt[j], 10, first+int64(j))
		putDigits(t.body, t.wt[j], 19, wt)
	}
	end := len(t.body)
	if n < len(t.seqAt) {
		end = t.idAt[n] - bytes.IndexByte([]byte(actionTemplate), 'I')
	}
	return t.body[:end]
}

func runLoad(base string, docs, batch, conns int, gz bool) int {
	nBatches := (docs + batch - 1) / batch
	var pre [][]byte
	if gz { // compressing is slower than the sink; do it before the clock starts
		t := newBatchTemplate(batch)
		for b := 0; b < nBatches; b++ {
			n := min(batch, docs-b*batch)
			var zb bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&zb, gzip.BestSpeed)
			zw.Write(t.fill(int64(loadSeqBase+b*batch), n))
			zw.Close()
			pre = append(pre, zb.Bytes())
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}}
	var next, sentBytes atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := newBatchTemplate(batch)
			for !failed.Load() {
				b := int(next.Add(1) - 1)
				if b >= nBatches {
					return
				}
				n := min(batch, docs-b*batch)
				var body []byte
				if gz {
					body = pre[b]
				} else {
					body = t.fill(int64(loadSeqBase+b*batch), n)
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/_bulk", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				if gz {
					req.Header.Set("Content-Encoding", "gzip")
				}
				resp, err := client.Do(req)
				if err != nil {
					fmt.Fprintln(os.Stderr, "load:", err)
					failed.Store(true)
					return
				}
				rb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || bytes.Count(rb, []byte(`"status":201`)) != n {
					fmt.Fprintf(os.Stderr, "load: bad response %d: %.200s\n", resp.StatusCode, rb)
					failed.Store(true)
					return
				}
				sentBytes.Add(int64(len(body)))
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	out, _ := json.Marshal(map[string]any{
		"docs": docs, "batch": batch, "conns": conns, "gzip": gz, "seconds": secs,
		"docs_per_s": float64(docs) / secs, "mb_per_s": float64(sentBytes.Load()) / secs / 1e6,
		"seq_first": loadSeqBase, "seq_last": loadSeqBase + docs - 1, "ok": !failed.Load(),
	})
	fmt.Println(string(out))
	if failed.Load() {
		return 1
	}
	return 0
}
