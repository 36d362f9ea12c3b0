"""The owners of the pipeline's tables: each writes only its own table (admission: table 0,
security: table 1; forwarding, table 2, is `controller.forwarding`). They never import each
other or the core: what one must tell another goes through the core as an event."""
