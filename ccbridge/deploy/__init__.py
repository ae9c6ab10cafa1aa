"""Safe dialplan changes: render with a source map, verify in a scratch Asterisk, diff, deploy."""
