"""The delivery layer every output shares (its front, the queue, the retry queue and the request
loop, is `outputs.base.Output`):

    batch    Piece and Batch: what one request carries and how each record of it is settled
             (ack, settle per record, retry_all, split), RetryQueue for records due again
    slots    AdaptiveSlots: requests in flight and records per request, adapted to pushback
    retry    backoff (one policy for every retry), the gate a destination's pushback closes, and
             the refused share of the latest requests
    health   delivering or not and why; one recovery rule for every output
    linger   batching by time: how long a partial batch waits for more records

An output's own package is then mostly its protocol: what goes on the wire, and what an answer
means for each record (delivered, retried, or dead-lettered). Request/response outputs
(Elasticsearch, HTTP) hand `Output.serve_requests` a `deliver(batch) -> pieces to send again`.
An output whose client batches and acknowledges by itself (Logstash's windows, a Kafka producer's
per-record futures) takes fragments (`Output.take`), settles their records as they are
acknowledged (`Output.credit`: the fragment is acknowledged with its last record, in any order),
dead-letters what fails for good (`outputs.deadletter`), and reports a whole-output failure (a
broker away, a refused login) through `Health`, retrying with `Backoff`: shipping waits, the
daemon does not crash.
"""
