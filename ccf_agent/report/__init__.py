"""`ccf-agent report`: the daily report the operations guide's log-analyzer.sh writes by hand, counted right.

    figures.py   what counts, the window, the Figures model and a Tally (pure)
    files.py     figures from the local log files (current and rotated, compressed included)
    search.py    figures from the Elasticsearch/OpenSearch outputs' indices (aggregations)
    render.py    text (the guide's layout), JSON; html.py: one self-contained page with SVG charts
    deliver.py   notifiers (Slack/Teams/Discord/webhook) and e-mail over SMTP
    run.py       the command: pick a source, redact, render, write, send
"""
