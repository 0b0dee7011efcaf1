"""The one place that talks to upstreams over the network."""
