"""The mirror of Kaltura's library: sync, the filters and selectors behind the Entries page, costs."""
