"""Pages: views per page, the security middleware, /healthz and the words pages use for steps."""
