"""The prediction log: every answered row, hash-chained, durable before the response goes out."""
