package main

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	doc := []byte(`{"message":"seq","stack":"a\n\"seq\":5","seq" : 42,"wt":"1700000000000000000"}`)
	if v, ok := parseInt(fieldValue(doc, keySeq)); !ok || v != 42 {
		t.Fatalf("seq = %d %v", v, ok)
	}
	if v, ok := parseInt(fieldValue(doc, keyWt)); !ok || v != 1700000000000000000 {
		t.Fatalf("wt = %d %v", v, ok)
	}
	act := []byte(`{"create":{"_index":"ccf-logs","_id":"a\"b"}}`)
	if op := actionOp(act); string(op) != "create" {
		t.Fatal(string(op))
	}
	if id, _ := stringValue(fieldValue(act, keyID)); string(id) != `a\"b` {
		t.Fatal(string(id))
	}
}

func post(t *testing.T, s *sink, path, body string, gz bool) string {
	var b bytes.Buffer
	if gz {
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(body))
		zw.Close()
	} else {
		b.WriteString(body)
	}
	req := httptest.NewRequest(http.MethodPost, path, &b)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, req)
	if rr.Code != 200 {
		t.Fatalf("status %d: %s", rr.Code, rr.Body)
	}
	return rr.Body.String()
}

func TestBulkCountsAndDuplicates(t *testing.T) {
	s := newSink()
	body := `{"create":{"_index":"ccf-logs","_id":"1"}}
{"seq":1,"wt":1}
{"create":{"_index":"ccf-payouts","_id":"2"}}
{"seq":2}
{"index":{"_id":"3"}}
{"seq":1}
`
	resp := post(t, s, "/ccf-logs/_bulk", body, false)
	want := `{"create":{"_index":"ccf-logs","_id":"1","_version":1,"result":"created","status":201}},` +
		`{"create":{"_index":"ccf-payouts","_id":"2","_version":1,"result":"created","status":201}},` +
		`{"index":{"_index":"ccf-logs","_id":"3","_version":1,"result":"created","status":201}}]}`
	if !strings.HasSuffix(resp, want) || !strings.Contains(resp, `"errors":false`) {
		t.Fatal(resp)
	}
	post(t, s, "/_bulk", "{\"create\":{\"_index\":\"ccf-payouts\",\"_id\":\"9\"}}\r\n{\"seq\": 3}\r\n", true)
	st := s.stats()
	if st["docs_total"].(int64) != 4 || st["distinct_seqs"].(int64) != 3 || st["duplicates"].(int64) != 1 ||
		st["gzip_requests"].(int64) != 1 || st["max_seq"].(int64) != 3 {
		t.Fatalf("%v", st)
	}
}

// BenchmarkBulk measures the handler alone (no sockets): docs/s per core.
func BenchmarkBulk(b *testing.B) {
	s := newSink()
	t := newBatchTemplate(1000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		body := t.fill(int64(loadSeqBase+i*1000), 1000)
		rr := httptest.NewRecorder()
		s.ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/_bulk", bytes.NewReader(body)))
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "docs/s")
}
