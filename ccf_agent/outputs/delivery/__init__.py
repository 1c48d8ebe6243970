"""The delivery layer every output shares (its front, the queue and the request loop, is
`outputs.base.Output`):

    retry    backoff (one policy for every retry), and the gate a destination's pushback closes
    health   delivering or not and why; one recovery rule for every output
    linger   batching by time: how long a partial batch waits for more records

An output's own package is then mostly its protocol: what goes on the wire, and what an answer
means for each record (delivered, retried, or dead-lettered).
"""
