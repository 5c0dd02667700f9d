"""The development kit: the local KRaft broker, the local run with demo traffic, synthetic traffic, a throwaway
PostgreSQL and every benchmark. Used by developers and tests; never imported by the flow, not in the runtime image."""
