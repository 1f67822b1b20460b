"""Everything that touches PyAV: probing, sources (demux + decode), sinks (encode + mux)."""
