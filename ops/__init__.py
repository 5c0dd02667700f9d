"""Operator tools: the status view, the lag exporter, dead-letter and unrouted redrive, contract export, and the
jurisdiction reference's building, import and publication. They use the flow packages; the flow never uses them."""
