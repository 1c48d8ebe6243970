module ccf-agent/bench/sink

go 1.22
