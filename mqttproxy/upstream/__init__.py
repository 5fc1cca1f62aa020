"""Fan-out to upstream brokers: records and brokers.json, routes, one link per upstream, the service API."""
